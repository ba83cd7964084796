"""`evalctl eval` and `evalctl evals show`: evaluate recorded checkpoints, show the results.

Owns the two commands: `eval` resolves checkpoint refs (12, ckpt:12, run:RUN) and runs
the spec's evaluators through `runners.evaluate` (or queues an eval job on `evalctl serve`
with --remote); `evals show` prints an evaluation's metrics and first examples. Tables
come from `evalctl.cli.render`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from evalctl.cli._common import JsonFlag, dump, fail, jobs_client, quiet_libraries, stderr_console
from evalctl.cli._common import console as _console
from evalctl.cli._common import registry as _registry
from service.errors import EvalctlError

app = typer.Typer(help="Inspect recorded evaluations.", no_args_is_help=True)

# Typer keeps the line breaks of a help text, so each paragraph is one line here.
EVAL_HELP = "\n\n".join(
    [
        "Re-run a spec's evaluators on recorded checkpoints and record the results.",
        "REF is a checkpoint id (12 or ckpt:12), or run:RUN for every checkpoint of a run "
        "(run:3, or run:NAME for the newest run with that name; step 0 is the base model).",
        "Results go to the registry and, when the run has one, to its MLflow run at each "
        "checkpoint's step. Generations are cached per checkpoint weights, so re-evaluating "
        "an unchanged checkpoint is quick. Checkpoint weights are verified against their "
        "recorded sha256 first.",
        "Examples: evalctl eval 12 --spec spec.yaml;  evalctl eval run:3 --spec spec.yaml "
        "-e json_schema",
    ]
)


def eval_checkpoints(
    ref: Annotated[str, typer.Argument(help="Checkpoint id (12, ckpt:12) or run:RUN.")],
    spec: Annotated[Path, typer.Option("--spec", help="The spec whose evaluators to run.")],
    evaluator: Annotated[
        list[str] | None,
        typer.Option("--evaluator", "-e", help="Only this evaluator (repeatable)."),
    ] = None,
    as_json: JsonFlag = False,
    remote: Annotated[
        bool,
        typer.Option("--remote", help="Queue an eval job on `evalctl serve` for a runner."),
    ] = False,
) -> None:
    """Re-run a spec's evaluators on recorded checkpoints and record the results."""
    from evalctl.cli.render import evaluations_table
    from evaluators.cache import reset_stats
    from runners.evaluate import evaluate_recorded
    from service.settings import get_settings
    from service.spec_loader import SpecError, load_spec

    try:
        loaded = load_spec(spec)
    except SpecError as err:
        print(str(err), file=sys.stderr)
        raise typer.Exit(2) from None
    registry = _registry()
    checkpoint_ids = _checkpoint_refs(registry, ref)
    if remote:
        _queue_eval_job(spec, loaded, checkpoint_ids, evaluator or [])
        return
    quiet_libraries()
    # --json keeps stdout for the JSON document; progress goes to stderr.
    console = _console() if not as_json else stderr_console()
    reset_stats()
    try:
        recorded = evaluate_recorded(
            registry=registry,
            settings=get_settings(),
            spec=loaded,
            checkpoint_ids=checkpoint_ids,
            evaluator_names=evaluator or None,
            console=console,
        )
    except KeyboardInterrupt:
        fail("evaluation interrupted; results recorded so far are kept", 130)
    except EvalctlError:
        raise
    except Exception as exc:
        if os.environ.get("EVALCTL_DEBUG"):
            raise
        from runners.run import failure_reason

        fail(f"evaluation failed: {failure_reason(exc)}", 1)
    stats = reset_stats()
    steps = {c: registry.get_checkpoint(checkpoint_id=c).step for c in checkpoint_ids}
    if as_json:
        dump(
            {
                "evaluations": [e.model_dump(mode="json") for e in recorded],
                "generation_cache": stats.as_dict(),
            }
        )
    else:
        console.print(evaluations_table(recorded, steps))
        console.print(f"generation cache: {stats.hits} hits, {stats.misses} generated")
    if any(e.error for e in recorded):
        raise typer.Exit(1)


def _queue_eval_job(
    spec_path: Path, spec: Any, checkpoint_ids: list[int], evaluators: list[str]
) -> None:
    from service.models import JobCreate

    job = jobs_client().enqueue(
        job_in=JobCreate(
            kind="eval",
            spec_text=spec.text,
            spec_path=str(spec_path.resolve()),
            gpus=0,
            payload={"checkpoint_ids": checkpoint_ids, "evaluators": evaluators},
        )
    )
    print(job.id)
    print(f"queued eval job {job.id} for checkpoints {checkpoint_ids}", file=sys.stderr)


def _checkpoint_refs(registry: Any, ref: str) -> list[int]:
    kind, sep, value = ref.partition(":")
    if sep and kind == "run":
        run = registry.get_run(ref=value)
        ids = [c.id for c in registry.list_checkpoints(run_id=run.id)]
        if not ids:
            fail(f"run {run.id} has no checkpoints")
        return ids
    number = value if sep and kind in ("ckpt", "checkpoint") else ref
    if sep and kind not in ("ckpt", "checkpoint"):
        fail(f"REF '{ref}': give a checkpoint id (12 or ckpt:12) or run:RUN")
    if not number.isdigit():
        fail(f"REF '{ref}': give a checkpoint id (12 or ckpt:12) or run:RUN")
    return [registry.get_checkpoint(checkpoint_id=int(number)).id]


@app.command("show")
def evals_show(
    ref: Annotated[str, typer.Argument(help="Evaluation id (checkpoint id with --checkpoint).")],
    checkpoint: Annotated[
        bool, typer.Option("--checkpoint", help="REF is a checkpoint: show all its evaluations.")
    ] = False,
    examples: Annotated[
        int, typer.Option("--examples", "-n", min=0, help="Show the first N examples.")
    ] = 5,
    as_json: JsonFlag = False,
) -> None:
    """Show an evaluation's metrics and its first per-example scores and outputs."""
    from evalctl.cli.render import examples_table, metrics_table

    if not ref.isdigit():
        fail(f"REF '{ref}': give a numeric {'checkpoint' if checkpoint else 'evaluation'} id")
    registry = _registry()
    if checkpoint:
        evaluations = registry.list_evaluations(checkpoint_id=int(ref))
    else:
        evaluations = [registry.get_evaluation(evaluation_id=int(ref))]
    pages = [registry.list_examples(evaluation_id=e.id, limit=examples) for e in evaluations]
    if as_json:
        data = [
            {
                **e.model_dump(mode="json"),
                "examples": [x.model_dump(mode="json") for x in page.data],
                "examples_count": page.count,
            }
            for e, page in zip(evaluations, pages, strict=True)
        ]
        dump({"data": data, "count": len(data)})
        return
    console = _console()
    if not evaluations:
        console.print(f"checkpoint {ref} has no evaluations")
    for e, page in zip(evaluations, pages, strict=True):
        step = registry.get_checkpoint(checkpoint_id=e.checkpoint_id).step
        console.print(
            f"[bold]evaluation {e.id}[/] {e.evaluator} on checkpoint {e.checkpoint_id} "
            f"(step {step}): {e.status.value}, {e.n_examples} examples, {e.duration_s:.2f}s, "
            f"config {e.config_hash[:12]}, {e.created_at:%Y-%m-%d %H:%M}"
        )
        if e.error:
            console.print(f"  error: [red]{e.error}[/]")
        if e.metrics:
            console.print(metrics_table(e))
        if page.data:
            console.print(examples_table(page.data))
            console.print(f"{len(page.data)} of {page.count} examples")
