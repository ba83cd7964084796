"""The `evalctl` command line: the composition root that wires spec, registry and runners.

Commands are grouped by noun (`evalctl runs list`). A user error exits 2 with one line on
stderr; a run that fails exits 1 with its recorded reason; tracebacks go to the run's log
file (set EVALCTL_DEBUG=1 to see them). Heavy libraries are imported inside commands so
that `evalctl --help` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from service.errors import EvalctlError

app = typer.Typer(
    help="Track, evaluate and gate fine-tuned LLMs from one YAML spec.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
runs_app = typer.Typer(help="List and inspect runs.", no_args_is_help=True)
db_app = typer.Typer(help="Manage the registry database.", no_args_is_help=True)
evals_app = typer.Typer(help="Inspect recorded evaluations.", no_args_is_help=True)
evaluators_app = typer.Typer(help="List evaluator plugins.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
app.add_typer(evals_app, name="evals")
app.add_typer(evaluators_app, name="evaluators")
app.add_typer(db_app, name="db")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one line to stderr and exit."""
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=False, highlight=False)


def _registry() -> Any:
    # `evalctl serve` at EVALCTL_URL (with EVALCTL_TOKEN) when set, else the local database.
    from service.remote import open_registry

    return open_registry()


def _dump(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


@app.command()
def validate(
    spec: Annotated[Path, typer.Argument(help="The experiment spec (YAML).")],
    as_json: JsonFlag = False,
) -> None:
    """Check a spec; print one `file:line:col: field: message` line per problem."""
    from service.spec_loader import SpecError, load_spec

    try:
        loaded = load_spec(spec)
    except SpecError as err:
        if as_json:
            _dump([vars(p) for p in err.problems])
        else:
            print(str(err), file=sys.stderr)
        raise typer.Exit(2) from None
    if as_json:
        _dump({"valid": True, "name": loaded.name})
    else:
        print(f"{spec}: ok ({loaded.name}: {len(loaded.evaluators)} evaluators)")


@app.command()
def run(
    spec: Annotated[Path | None, typer.Argument(help="The experiment spec (YAML).")] = None,
    resume: Annotated[
        str | None, typer.Option("--resume", help="Continue RUN from its last checkpoint.")
    ] = None,
    remote: Annotated[
        bool,
        typer.Option(
            "--remote",
            help="Record to `evalctl serve` at EVALCTL_URL (EVALCTL_TOKEN), not locally.",
        ),
    ] = False,
) -> None:
    """Fine-tune, checkpoint, evaluate and record one run of a spec."""
    from runners.run import RunContext, create_run, execute_run
    from service.local import LocalRegistry
    from service.settings import get_settings
    from service.spec_loader import SpecError, load_spec

    _quiet_libraries()
    settings, console = get_settings(), _console()
    registry: Any
    if remote:
        from service.remote import RemoteRegistry, remote_settings, remote_tracking

        url, token = remote_settings() or fail("--remote needs EVALCTL_URL and EVALCTL_TOKEN")
        registry = RemoteRegistry(url, token, retry_for=settings.retry_seconds)
        settings = remote_tracking(settings, url, token)
    else:
        registry = LocalRegistry(settings.db_url)
    previous = registry.get_run(ref=resume) if resume else None
    if spec is None:
        if previous is None or not previous.spec_path:
            fail("give a SPEC, or --resume RUN for a run that was started from a spec file")
        spec = Path(previous.spec_path)
    try:
        loaded = load_spec(spec)
    except SpecError as err:
        print(str(err), file=sys.stderr)
        raise typer.Exit(2) from None
    ctx = RunContext(spec=loaded, registry=registry, settings=settings, console=console)
    record = previous or create_run(ctx)
    console.print(f"run [bold]{record.id}[/] ({loaded.name}) -> {settings.home_dir}")
    try:
        finished = execute_run(ctx, record, resume=previous is not None)
    except KeyboardInterrupt:
        fail(f"run {record.id} interrupted; continue with: evalctl run --resume {record.id}", 130)
    except Exception as exc:
        if os.environ.get("EVALCTL_DEBUG"):
            raise
        from runners.run import failure_reason, run_dir

        log = run_dir(settings, record.id) / "run.log"
        fail(f"run {record.id} failed: {failure_reason(exc)} (log: {log})", 1)
    _print_summary(console, registry, finished)


def _queue_eval_job(
    spec_path: Path, spec: Any, checkpoint_ids: list[int], evaluators: list[str]
) -> None:
    from evalctl.cli_jobs import _jobs
    from service.models import JobCreate

    job = _jobs().enqueue(
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


def _quiet_libraries() -> None:
    # Library progress bars and warnings would bury evalctl's own output; they still go
    # to the run's log file through the logging module.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    import logging
    import warnings

    for name in ("mlflow", "alembic", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


def _print_summary(console: Any, registry: Any, run: Any) -> None:
    from evalctl.render import base_vs_best_table

    checkpoints = registry.list_checkpoints(run_id=run.id)
    evaluations = registry.list_evaluations(run_id=run.id)
    base = next((c for c in checkpoints if c.step == 0), None)
    best = next((c for c in checkpoints if c.id == run.best_checkpoint_id), None)
    if base and best:
        console.print(base_vs_best_table(base, best, evaluations))
    console.print(f"run {run.id} {run.status.value}; details: evalctl runs show {run.id}")


@runs_app.command("list")
def runs_list(
    experiment: Annotated[str | None, typer.Option(help="Only this experiment.")] = None,
    status: Annotated[str | None, typer.Option(help="Only runs with this status.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many runs.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """List runs, newest first."""
    from evalctl.render import runs_table
    from service.models import RunStatus

    if status is not None and status not in RunStatus.__members__:
        fail(f"--status: unknown status '{status}' (one of {', '.join(RunStatus.__members__)})")
    registry = _registry()
    page = registry.list_runs(
        experiment=experiment, status=RunStatus(status) if status else None, limit=limit
    )
    if as_json:
        _dump({"data": [r.model_dump(mode="json") for r in page.data], "count": page.count})
        return
    experiments = {r.experiment_id: r.name for r in page.data}
    _console().print(runs_table(page.data, experiments))
    print(f"{len(page.data)} of {page.count} runs")


@runs_app.command("show")
def runs_show(
    ref: Annotated[str, typer.Argument(help="Run id, or name (newest run with that name).")],
    as_json: JsonFlag = False,
) -> None:
    """Show a run: spec summary, checkpoints with their scores, best checkpoint per metric."""
    from evalctl.render import best_per_metric, checkpoints_table, fmt

    registry = _registry()
    run = registry.get_run(ref=ref)
    checkpoints = registry.list_checkpoints(run_id=run.id)
    evaluations = registry.list_evaluations(run_id=run.id)
    best = best_per_metric(checkpoints, evaluations)
    if as_json:
        _dump(
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


@app.command("eval", help=EVAL_HELP)
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
    from evalctl.render import evaluations_table
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
    _quiet_libraries()
    console = _console() if not as_json else _quiet_console()
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
        _dump(
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


def _quiet_console() -> Any:
    from rich.console import Console

    # --json keeps stdout for the JSON document; progress goes to stderr.
    return Console(stderr=True, highlight=False)


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


@evals_app.command("show")
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
    from evalctl.render import examples_table, metrics_table

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
        _dump({"data": data, "count": len(data)})
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


@evaluators_app.command("list")
def evaluators_list(as_json: JsonFlag = False) -> None:
    """List registered evaluators with their config options (entry points)."""
    from evalctl.render import evaluators_table
    from evaluators.registry import available, get_evaluator_class

    rows: list[dict[str, Any]] = []
    for name, ep in sorted(available().items()):
        row: dict[str, Any] = {"name": name, "module": ep.value.split(":")[0]}
        try:
            row["config_schema"] = get_evaluator_class(name).Config.model_json_schema()
        except Exception as exc:  # one broken plugin must not hide the others
            row["config_schema"] = None
            row["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        rows.append(row)
    if as_json:
        _dump(rows)
        return
    _console().print(evaluators_table(rows))
    print(f"{len(rows)} evaluators")


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply database migrations (EVALCTL_DATABASE_URL, else SQLite under EVALCTL_HOME)."""
    from service.db import upgrade
    from service.settings import get_settings

    url = get_settings().db_url
    upgrade(url, revision)
    print(f"database at {_redact(url)} upgraded to {revision}")


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
) -> None:
    if version:
        from evalctl import __version__

        print(f"evalctl {__version__}")
        raise typer.Exit()


# --- gate commands (evalctl/cli_gate.py registers here) ---
from evalctl.cli_gate import register as _register_gate  # noqa: E402

_register_gate(app)

# --- registry commands (evalctl/cli_registry.py registers here) ---
from evalctl.cli_registry import register as _register_registry  # noqa: E402

_register_registry(app)


# --- service commands (evalctl/cli_serve.py registers here) ---
from evalctl.cli_serve import register as _register_serve  # noqa: E402

_register_serve(app)


# --- job commands (evalctl/cli_jobs.py registers here) ---
from evalctl.cli_jobs import register as _register_jobs  # noqa: E402

_register_jobs(app)


def main() -> None:
    """Run the CLI; user errors become one line and exit code 2."""
    try:
        app()
    except EvalctlError as err:
        if os.environ.get("EVALCTL_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
