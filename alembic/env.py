"""Alembic environment: runs the registry's migrations against one database.

The URL comes from `config.attributes["url"]` (set by `service.db.upgrade`), else
`alembic -x url=...`, else the `sqlalchemy.url` option, else the settings
(`EVALCTL_DATABASE_URL`, or SQLite under `EVALCTL_HOME`). Tables are those of
the `service.models` package, whose `__init__` imports every table module.
SQLite runs in batch mode with foreign keys off (table rebuilds must not cascade) under
`BEGIN IMMEDIATE`; Postgres takes an advisory lock, so two processes upgrading at once
apply each migration once.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import pool, text
from sqlalchemy.types import TypeDecorator
from sqlmodel import SQLModel

import service.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from service.db import IMMEDIATE, make_engine, normalize_url

config = context.config
target_metadata = SQLModel.metadata
#: Any constant shared by every evalctl process; it names the migration advisory lock.
PG_MIGRATION_LOCK = 7_164_829_301


def _url() -> str:
    url = (
        config.attributes.get("url")
        or context.get_x_argument(as_dictionary=True).get("url")
        or config.get_main_option("sqlalchemy.url")
    )
    if not url:
        from service.settings import get_settings

        url = get_settings().db_url
    return normalize_url(url)


def _render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Render sqlmodel's TypeDecorators (AutoString, UTCDateTime) as their plain types."""
    if type_ == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{obj.impl_instance!r}"
    return False


def _options(is_sqlite: bool) -> dict[str, Any]:
    return {
        "target_metadata": target_metadata,
        "compare_type": True,
        "render_as_batch": is_sqlite,
        "render_item": _render_item,
        # Alembic assumes SQLite cannot roll back DDL and commits after each migration;
        # it can (SQLAlchemy emits our BEGIN), and one transaction under BEGIN IMMEDIATE
        # is what makes processes that start at once migrate once: a second one waits for
        # the lock and then reads the head, never a revision halfway up.
        "transactional_ddl": True,
    }


def run_migrations_offline() -> None:
    """Write the migration SQL to stdout (`alembic upgrade head --sql`)."""
    url = _url()
    context.configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **_options(url.startswith("sqlite")),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Apply the migrations over a connection of our own engine."""
    engine = make_engine(_url(), poolclass=pool.NullPool)
    is_sqlite = engine.dialect.name == "sqlite"
    try:
        with engine.connect() as connection:
            if is_sqlite:
                # Outside any transaction, where this pragma takes effect; the connection
                # is closed afterwards (NullPool), so no pooled connection keeps it off.
                connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
                connection.execution_options(**IMMEDIATE)
            context.configure(connection=connection, **_options(is_sqlite))
            with context.begin_transaction():
                if engine.dialect.name == "postgresql":
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK}
                    )
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
