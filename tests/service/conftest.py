"""Databases for the registry tests: a SQLite file and a fresh Postgres database.

`db_url` gives each test an empty database (migration tests); `registry` gives a module a
`LocalRegistry` on one migrated database per backend, shared by its tests, which therefore
use unique names instead of wiping it. Postgres cases are marked `postgres` and skip when
the server on 127.0.0.1:5432 cannot be reached.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from service.db import dispose_engines
from service.local import LocalRegistry

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BACKENDS = [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)]


@contextmanager
def _database(backend: str, folder: Path) -> Iterator[str]:
    """Create an empty database on `backend`, yield its URL, then drop it."""
    if backend == "sqlite":
        url = f"sqlite:///{folder / f'registry-{uuid.uuid4().hex[:8]}.db'}"
        yield url
        dispose_engines(url)
        return
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        reason = str(exc).splitlines()[0]
        pytest.skip(f"PostgreSQL is not reachable at 127.0.0.1:5432: {reason}")
    name = f"evalctl_test_{uuid.uuid4().hex[:12]}"
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield url
        finally:
            dispose_engines(url)
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Return the URL of an empty database (SQLite file, or a fresh Postgres database)."""
    with _database(request.param, tmp_path) as url:
        yield url


@pytest.fixture(scope="module", params=BACKENDS)
def registry(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalRegistry]:
    """Return a LocalRegistry on a migrated database shared by this module's tests."""
    with _database(request.param, tmp_path_factory.mktemp("registry")) as url:
        yield LocalRegistry(url)
