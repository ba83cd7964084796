"""Database engines and schema upgrades for the registry (SQLite or Postgres).

Owns how a URL becomes an `Engine` (SQLite tuned so two processes can share one file:
foreign keys on, WAL journal, a busy timeout and real `BEGIN` statements; Postgres through
psycopg 3) and how the schema reaches Alembic's head. It does not define tables
(`service.models`) or run queries (`service.crud`).

On SQLite a transaction starts with a deferred `BEGIN`; a connection or engine carrying the
execution option `sqlite_begin="IMMEDIATE"` (see `IMMEDIATE`) takes the write lock up front
instead, so a read-then-write transaction waits for other writers rather than failing with
"database is locked".
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

import service
from service.settings import private_file

#: Seconds a SQLite connection waits for another process's write lock before giving up.
SQLITE_TIMEOUT_S = 30.0
#: Execution options that make a SQLite transaction take the write lock at `BEGIN`.
IMMEDIATE: dict[str, Any] = {"sqlite_begin": "IMMEDIATE"}
#: The repository's migration scripts (the only way the schema changes).
ALEMBIC_DIR = Path(service.__file__).resolve().parent.parent / "alembic"


def _json_dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def normalize_url(url: str) -> str:
    """Return `url` with Postgres URLs pointed at the psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for `url`; extra keyword arguments go to `create_engine`."""
    url = normalize_url(url)
    # NaN/inf are not JSON: SQLite would store them and Postgres reject them; refuse both.
    kwargs.setdefault("json_serializer", _json_dumps)
    if make_url(url).get_backend_name() != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)
        return create_engine(url, **kwargs)
    _create_private(make_url(url).database)
    connect_args = kwargs.pop("connect_args", {})
    connect_args.setdefault("timeout", SQLITE_TIMEOUT_S)
    connect_args.setdefault("check_same_thread", False)
    engine = create_engine(url, connect_args=connect_args, **kwargs)
    _configure_sqlite(engine)
    return engine


def _create_private(database: str | None) -> None:
    """Create a SQLite database file that does not exist yet with mode 0600, not 0644.

    SQLite would create it with the umask's mode on first connect; its -wal/-shm/-journal
    files take the mode of the database file.
    """
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if path.parent.is_dir():  # else SQLite's own error says the folder is missing
        private_file(path)


def _configure_sqlite(engine: Engine) -> None:
    """Turn on foreign keys and WAL, and let SQLAlchemy emit BEGIN (the busy timeout is the
    driver's `timeout` argument)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The sqlite3 module's own transaction handling defers BEGIN to the first write and
        # breaks SAVEPOINT and transactional DDL; hand it to SQLAlchemy (see "begin" below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        if mode not in {"DEFERRED", "IMMEDIATE", "EXCLUSIVE"}:
            raise ValueError(f"Unknown sqlite_begin mode {mode!r}")
        connection.exec_driver_sql(f"BEGIN {mode}")


_ENGINES: dict[str, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def get_engine(url: str | None = None) -> Engine:
    """Return the process-wide engine for `url` (default: the settings' database URL)."""
    url = normalize_url(url or _default_url())
    with _ENGINES_LOCK:
        if url not in _ENGINES:
            _ENGINES[url] = make_engine(url)
        return _ENGINES[url]


def dispose_engines(url: str | None = None) -> None:
    """Close and forget the engine `get_engine` made for `url` (all of them if None)."""
    with _ENGINES_LOCK:
        urls = list(_ENGINES) if url is None else [normalize_url(url)]
        for key in urls:
            engine = _ENGINES.pop(key, None)
            if engine is not None:
                engine.dispose()


def _default_url() -> str:
    from service.settings import get_settings

    return get_settings().db_url


def alembic_config(url: str | None = None) -> Config:
    """Return an Alembic config for the repository's migrations, bound to `url`."""
    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    if url is not None:
        # An attribute, not the "sqlalchemy.url" option: options go through ConfigParser
        # interpolation, which would mangle a '%' in a password. Without one, env.py
        # falls back to the settings' URL.
        config.attributes["url"] = normalize_url(url)
    return config


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Upgrade the schema at `url` to `revision`."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | None = None, revision: str = "base") -> None:
    """Downgrade the schema at `url` to `revision` (drops data; for tests and developers)."""
    command.downgrade(alembic_config(url), revision)


def head_revisions() -> set[str]:
    """Return the head revision ids of the migration scripts."""
    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def current_revision(url: str | None = None) -> str | None:
    """Return the schema revision at `url` (None for an empty database)."""
    with get_engine(url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def is_up_to_date(url: str | None = None) -> bool:
    """Return whether the schema at `url` is at the migrations' head."""
    with get_engine(url).connect() as connection:
        current = MigrationContext.configure(connection).get_current_heads()
    return set(current) == head_revisions()


def ensure_schema(url: str | None = None) -> None:
    """Upgrade the schema at `url` to head unless it is there already."""
    if not is_up_to_date(url):
        upgrade(url)
