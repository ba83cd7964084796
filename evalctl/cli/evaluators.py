"""`evalctl evaluators list`: the evaluator plugins installed, with their config options.

Owns the listing; finding and loading plugins is `evaluators.registry` (entry points).
One broken plugin is listed with its error instead of hiding the others.
"""

from __future__ import annotations

from typing import Any

import typer

from evalctl.cli._common import JsonFlag, dump
from evalctl.cli._common import console as _console

app = typer.Typer(help="List evaluator plugins.", no_args_is_help=True)


@app.command("list")
def evaluators_list(as_json: JsonFlag = False) -> None:
    """List registered evaluators with their config options (entry points)."""
    from evalctl.cli.render import evaluators_table
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
        dump(rows)
        return
    _console().print(evaluators_table(rows))
    print(f"{len(rows)} evaluators")
