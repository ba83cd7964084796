"""Real `evalctl serve` processes on loopback ports, and httpx clients for them.

`server` is one SQLite-backed server shared by the package's tests (they use unique names
and labels, never a wiped DB); tests start others (Postgres, --no-migrate, a fresh DB for
schemathesis) with `tests.helpers.start_server`. Each is the real CLI in a subprocess, so
the first-start admin token, migrations on start and uvicorn are exercised as a user runs
them.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.helpers import LiveServer, start_server

#: The smallest spec that `POST /api/v1/jobs` accepts (its files are not checked there).
JOB_SPEC_TEXT = "name: job\nbase_model: ./model\ndata: {train: train.jsonl, format: vertex}\n"


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Return a server on a fresh SQLite registry, shared by the API tests."""
    home = tmp_path_factory.mktemp("api-home")
    running = start_server(home, f"sqlite:///{home / 'evalctl.db'}")
    yield running
    running.stop()


@pytest.fixture
def admin(server: LiveServer) -> Iterator[httpx.Client]:
    """Return a client sending the server's first-start admin token."""
    with server.client(server.admin_token) as client:
        yield client
