"""`evalctl serve` (the registry API under uvicorn) and `evalctl tokens ...` (API tokens).

The `tokens` commands work on the registry database directly (EVALCTL_DATABASE_URL, else
SQLite under EVALCTL_HOME), not over HTTP: they are the administrator's tools on the
server machine, and they work before any token exists or after the last admin token was
lost. Remote clients manage tokens through `/api/v1/tokens` with an admin token. uvicorn,
FastAPI and the service modules are imported inside the commands.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

tokens_app = typer.Typer(help="Create, list and revoke API tokens.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `evalctl` app."""
    app.command("serve")(serve)
    app.add_typer(tokens_app, name="tokens")


def serve(
    host: Annotated[
        str | None,
        typer.Option(
            "--host", help="Address to listen on (default: EVALCTL_SERVER__HOST or 127.0.0.1)."
        ),
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="Port (default: EVALCTL_SERVER__PORT or 8080).")
    ] = None,
    no_migrate: Annotated[
        bool, typer.Option("--no-migrate", help="Do not upgrade the database schema on start.")
    ] = False,
) -> None:
    """Run the registry API, the web dashboard at / and MLflow under /mlflow, with uvicorn."""
    import uvicorn

    from service.app import create_app
    from service.settings import get_settings

    settings = get_settings()
    if host:  # the dashboard's default trusted hosts include the bind address
        settings.server.host = host
    app = create_app(settings, migrate=not no_migrate)
    bind_host = settings.server.host
    bind_port = settings.server.port if port is None else port
    shown = "localhost" if bind_host in {"0.0.0.0", "::"} else bind_host
    print(
        f"evalctl: dashboard at http://{shown}:{bind_port}/ (log in with an API token), "
        f"API at /api/v1, MLflow at /mlflow",
        file=sys.stderr,
        flush=True,
    )
    if "*" in settings.server.dashboard_hosts():
        print(
            "evalctl: the dashboard answers to any Host header; set "
            "EVALCTL_SERVER__TRUSTED_HOSTS to the names users reach it by (DNS rebinding)",
            file=sys.stderr,
            flush=True,
        )
    uvicorn.run(app, host=bind_host, port=bind_port, log_level="info")


def _session() -> Any:
    from sqlmodel import Session

    from service.db import ensure_schema, get_engine
    from service.settings import get_settings

    url = get_settings().db_url
    ensure_schema(url)
    return Session(get_engine(url))


@tokens_app.command("create")
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
    from service import queue

    expires_at = None
    if expires_in_days is not None:
        expires_at = datetime.now(UTC) + timedelta(days=expires_in_days)
    with _session() as session:
        plain, row = queue.create_token(
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


@tokens_app.command("list")
def tokens_list(as_json: JsonFlag = False) -> None:
    """List tokens (never their secrets)."""
    from service import queue
    from service.models import ApiTokenPublic

    with _session() as session:
        rows = [ApiTokenPublic.model_validate(r) for r in queue.list_tokens(session=session)]
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "name", "scopes", "prefix", "created", "expires", "last used", "revoked")
    for r in rows:
        table.add_row(
            str(r.id),
            r.name,
            ",".join(r.scopes),
            r.prefix,
            _when(r.created_at),
            _when(r.expires_at),
            _when(r.last_used_at),
            _when(r.revoked_at),
        )
    Console(highlight=False).print(table)


@tokens_app.command("revoke")
def tokens_revoke(token_id: Annotated[int, typer.Argument(help="The token's id.")]) -> None:
    """Revoke a token; it stops authenticating at once."""
    from service import queue

    with _session() as session:
        row = queue.revoke_token(session=session, token_id=token_id)
        print(f"token {row.id} ({row.name}) revoked at {_when(row.revoked_at)}")


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"
