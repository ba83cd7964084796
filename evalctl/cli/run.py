"""`evalctl run`: fine-tune, checkpoint, evaluate and record one run of a spec.

Owns the command: picking the registry (local, or `evalctl serve` with --remote), resuming
a run, and the summary it prints (base model vs best checkpoint). The run itself is
`runners.run`. A run that fails exits 1 with its recorded reason; the traceback goes to
the run's log file (EVALCTL_DEBUG=1 shows it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from evalctl.cli._common import console as _console
from evalctl.cli._common import fail, quiet_libraries


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

    quiet_libraries()
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


def _print_summary(console: Any, registry: Any, run: Any) -> None:
    from evalctl.cli.render import base_vs_best_table

    checkpoints = registry.list_checkpoints(run_id=run.id)
    evaluations = registry.list_evaluations(run_id=run.id)
    base = next((c for c in checkpoints if c.step == 0), None)
    best = next((c for c in checkpoints if c.id == run.best_checkpoint_id), None)
    if base and best:
        console.print(base_vs_best_table(base, best, evaluations))
    console.print(f"run {run.id} {run.status.value}; details: evalctl runs show {run.id}")
