"""`evalctl runs list` and `evalctl runs show`: recorded runs and their checkpoints.

Owns the two listings (tables from `evalctl.cli.render`, or `--json`); the data comes
through the `Registry` interface, local or `evalctl serve`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from evalctl.cli._common import JsonFlag, dump, fail
from evalctl.cli._common import console as _console
from evalctl.cli._common import registry as _registry

app = typer.Typer(help="List and inspect runs.", no_args_is_help=True)


@app.command("list")
def runs_list(
    experiment: Annotated[str | None, typer.Option(help="Only this experiment.")] = None,
    status: Annotated[str | None, typer.Option(help="Only runs with this status.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many runs.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """List runs, newest first."""
    from evalctl.cli.render import runs_table
    from service.models import RunStatus

    if status is not None and status not in RunStatus.__members__:
        fail(f"--status: unknown status '{status}' (one of {', '.join(RunStatus.__members__)})")
    registry = _registry()
    page = registry.list_runs(
        experiment=experiment, status=RunStatus(status) if status else None, limit=limit
    )
    if as_json:
        dump({"data": [r.model_dump(mode="json") for r in page.data], "count": page.count})
        return
    experiments = {r.experiment_id: r.name for r in page.data}
    _console().print(runs_table(page.data, experiments))
    print(f"{len(page.data)} of {page.count} runs")


@app.command("show")
def runs_show(
    ref: Annotated[str, typer.Argument(help="Run id, or name (newest run with that name).")],
    as_json: JsonFlag = False,
) -> None:
    """Show a run: spec summary, checkpoints with their scores, best checkpoint per metric."""
    from evalctl.cli.render import best_per_metric, checkpoints_table, fmt

    registry = _registry()
    run = registry.get_run(ref=ref)
    checkpoints = registry.list_checkpoints(run_id=run.id)
    evaluations = registry.list_evaluations(run_id=run.id)
    best = best_per_metric(checkpoints, evaluations)
    if as_json:
        dump(
            {
                "run": run.model_dump(mode="json", exclude={"spec_text"}),
                "spec": run.spec_text,
                "checkpoints": [c.model_dump(mode="json") for c in checkpoints],
                "evaluations": [e.model_dump(mode="json") for e in evaluations],
                "best_per_metric": best,
            }
        )
        return
    console = _console()
    console.print(f"[bold]run {run.id}[/] {run.name}  status: {run.status.value}")
    if run.failure_reason:
        console.print(f"  failure: [red]{run.failure_reason}[/]")
    console.print(f"  base model: {run.base_model or '-'} ({(run.base_model_hash or '-')[:12]})")
    for name, digest in sorted(run.dataset_hashes.items()):
        console.print(f"  data {name}: {digest[:12]}")
    console.print(
        f"  spec: {run.spec_path or '-'} ({run.spec_hash[:12]}), git: {run.git_sha or '-'}"
    )
    console.print(f"  mlflow run: {run.mlflow_run_id or '-'}")
    console.print(checkpoints_table(checkpoints, evaluations, run.best_checkpoint_id))
    if best:
        console.print("best checkpoint per metric:")
        for metric, info in best.items():
            console.print(f"  {metric}: {fmt(info['value'])} at step {info['step']}")
