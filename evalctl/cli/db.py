"""`evalctl db upgrade`: apply the registry database's migrations (Alembic).

Owns the command; the migrations are `alembic/` and running them is `service.db.upgrade`.
"""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(help="Manage the registry database.", no_args_is_help=True)


@app.command("upgrade")
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
