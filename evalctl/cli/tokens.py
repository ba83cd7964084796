"""`evalctl tokens ...`: create, list and revoke API tokens.

The commands work on the registry database directly (EVALCTL_DATABASE_URL, else SQLite
under EVALCTL_HOME), not over HTTP: they are the administrator's tools on the server
machine, and they work before any token exists or after the last admin token was lost.
Remote clients manage tokens through `/api/v1/tokens` with an admin token. The token
store is `service.crud` (`service/crud/tokens.py`); the service modules are imported
inside the commands.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from evalctl.cli._common import JsonFlag

app = typer.Typer(help="Create, list and revoke API tokens.", no_args_is_help=True)


def _session() -> Any:
    from sqlmodel import Session

    from service.db import ensure_schema, get_engine
    from service.settings import get_settings

    url = get_settings().db_url
    ensure_schema(url)
    return Session(get_engine(url))


@app.command("create")
def tokens_create(
    name: Annotated[str, typer.Option("--name", help="What the token is for, e.g. 'ci'.")],
    scope: Annotated[
        list[str], typer.Option("--scope", help="read, write, runner or admin (repeatable).")
    ],
    expires_in_days: Annotated[
        float | None, typer.Option("--expires-in-days", help="Expire after D days.", min=0)
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a token and print it (the only time it is shown)."""
    from service import crud

    expires_at = None
    if expires_in_days is not None:
        expires_at = datetime.now(UTC) + timedelta(days=expires_in_days)
    with _session() as session:
        plain, row = crud.create_token(
            session=session, name=name, scopes=scope, expires_at=expires_at
        )
        token_id, scopes = row.id, list(row.scopes)
    if as_json:
        print(json.dumps({"id": token_id, "name": name, "scopes": scopes, "token": plain}))
        return
    print(plain)
    typer.echo(
        f"token {token_id} ({', '.join(scopes)}); store it now, it is not shown again", err=True
    )


@app.command("list")
def tokens_list(as_json: JsonFlag = False) -> None:
    """List tokens (never their secrets)."""
    from service import crud
    from service.models import ApiTokenPublic

    with _session() as session:
        rows = [ApiTokenPublic.model_validate(r) for r in crud.list_tokens(session=session)]
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
        return
    from rich.console import Console

    from evalctl.cli.render import tokens_table

    Console(highlight=False).print(tokens_table(rows))


@app.command("revoke")
def tokens_revoke(token_id: Annotated[int, typer.Argument(help="The token's id.")]) -> None:
    """Revoke a token; it stops authenticating at once."""
    from evalctl.cli.render import when
    from service import crud

    with _session() as session:
        row = crud.revoke_token(session=session, token_id=token_id)
        print(f"token {row.id} ({row.name}) revoked at {when(row.revoked_at)}")
