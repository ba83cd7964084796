"""The `evalctl` command line: the composition root that wires spec, registry and runners.

This module only assembles the Typer app from one module per command noun
(`evalctl/cli/<noun>.py`, sharing `_common.py`; tables in `render.py`) and runs it. No
command module imports this one. Commands are grouped by noun (`evalctl runs list`). A
user error exits 2 with one line on stderr; a run that fails exits 1 with its recorded
reason; tracebacks go to the run's log file (set EVALCTL_DEBUG=1 to see them). Heavy
libraries are imported inside commands so that `evalctl --help` stays fast.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from evalctl.cli import (
    aliases,
    compare,
    db,
    evals,
    evaluators,
    gate,
    jobs,
    run,
    runner,
    runs,
    serve,
    tokens,
    validate,
)
from service.errors import EvalctlError

app = typer.Typer(
    help="Track, evaluate and gate fine-tuned LLMs from one YAML spec.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(runs.app, name="runs")
app.add_typer(evals.app, name="evals")
app.add_typer(evaluators.app, name="evaluators")
app.add_typer(db.app, name="db")
app.command()(validate.validate)
app.command()(run.run)
app.command("eval", help=evals.EVAL_HELP)(evals.eval_checkpoints)
app.command("gate", help=gate.GATE_HELP)(gate.gate)
app.command("promote")(aliases.promote)
app.command("compare")(compare.compare)
app.add_typer(aliases.app, name="aliases")
app.command("serve")(serve.serve)
app.add_typer(tokens.app, name="tokens")
app.command("submit")(jobs.submit)
app.add_typer(jobs.app, name="jobs")
app.add_typer(runner.app, name="runner")


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
) -> None:
    if version:
        from evalctl import __version__

        print(f"evalctl {__version__}")
        raise typer.Exit()


def main() -> None:
    """Run the CLI; user errors become one line and exit code 2."""
    try:
        app()
    except EvalctlError as err:
        if os.environ.get("EVALCTL_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
