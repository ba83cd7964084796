"""`evalctl validate`: check a spec without running anything.

Owns the command: one `file:line:col: field: message` line per problem on stderr (or the
problems as JSON), exit 2 when there is any. Loading and checking is `service.spec_loader`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from evalctl.cli._common import JsonFlag, dump


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
            dump([vars(p) for p in err.problems])
        else:
            print(str(err), file=sys.stderr)
        raise typer.Exit(2) from None
    if as_json:
        dump({"valid": True, "name": loaded.name})
    else:
        print(f"{spec}: ok ({loaded.name}: {len(loaded.evaluators)} evaluators)")
