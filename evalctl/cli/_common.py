"""What every `evalctl` command module shares: output, errors, and opening the registry.

Owns `fail` (one line on stderr, exit 2 by default), the rich consoles, the JSON dump of
`--json`, opening the registry the settings name (`service.registry.open_registry`), the
job-queue client for commands that talk to `evalctl serve`, quieting library progress
bars, and running a gate's missing evaluations in this process (`runners.evaluate`).
Command modules import this module and `evalctl.cli.render`, never the CLI root. Heavy
libraries are imported inside the functions.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from service.errors import EvalctlError

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
SpecOption = Annotated[
    Path | None, typer.Option("--spec", help="The spec whose experiment the refs belong to.")
]
ExperimentOption = Annotated[
    str | None, typer.Option("--experiment", help="The experiment (instead of --spec).")
]


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one line to stderr and exit."""
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def console() -> Any:
    """Return the console commands print tables to (stdout)."""
    from rich.console import Console

    return Console(stderr=False, highlight=False)


def stderr_console() -> Any:
    """Return a console on stderr, for progress while stdout holds a result."""
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def registry() -> Any:
    """Open `evalctl serve` at EVALCTL_URL (with EVALCTL_TOKEN) when set, else the local DB."""
    from service.registry import open_registry

    return open_registry()


def dump(data: Any) -> None:
    """Print `data` as indented JSON."""
    print(json.dumps(data, indent=2, default=str))


def service_address() -> tuple[str, str]:
    """Return (EVALCTL_URL, EVALCTL_TOKEN), or fail when they are not set."""
    from service.remote import remote_settings

    found = remote_settings()
    if found is None:
        fail("set EVALCTL_URL and EVALCTL_TOKEN to the `evalctl serve` URL and an API token")
    return found


def jobs_client() -> Any:
    """Return a client for the job queue of `evalctl serve`."""
    from service.jobs_client import JobsClient
    from service.remote import ApiClient
    from service.settings import get_settings

    url, token = service_address()
    return JobsClient(ApiClient(url, token, retry_for=get_settings().retry_seconds))


def split_labels(value: str | None) -> list[str]:
    """Split a `--labels gpu,h100` option into its labels."""
    return [label.strip() for label in (value or "").split(",") if label.strip()]


def quiet_libraries() -> None:
    """Silence library progress bars and warnings (they still reach the run's log file)."""
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


def evaluate_here(spec: Any, registry: Any, console: Any) -> Callable[[int, list[str]], None]:
    """Return what runs a gate's missing evaluations of `spec` in this process."""

    def evaluate(checkpoint_id: int, names: list[str]) -> None:
        from runners.evaluate import evaluate_recorded
        from service.settings import get_settings

        quiet_libraries()
        console.print(f"evaluating checkpoint {checkpoint_id}: {', '.join(names)} (missing)")
        try:
            evaluate_recorded(
                registry=registry,
                settings=get_settings(),
                spec=spec,
                checkpoint_ids=[checkpoint_id],
                evaluator_names=names,
                console=console,
            )
        except EvalctlError:
            raise
        except Exception as exc:
            if os.environ.get("EVALCTL_DEBUG"):
                raise
            from runners.run import failure_reason

            raise EvalctlError(
                f"evaluating checkpoint {checkpoint_id} failed: {failure_reason(exc)}"
            ) from None

    return evaluate


def experiment_name(spec: Path | None, experiment: str | None) -> str | None:
    """Return the experiment that --spec or --experiment names (None: neither)."""
    if spec is not None and experiment is not None:
        fail("give --spec or --experiment, not both")
    if spec is None:
        return experiment
    from service.spec_loader import SpecError, load_spec

    try:
        return load_spec(spec).experiment_name
    except SpecError as err:
        print(str(err), file=sys.stderr)
        raise typer.Exit(2) from None
