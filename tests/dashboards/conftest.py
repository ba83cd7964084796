"""Dashboard fixtures: a live `evalctl serve` with a seeded registry, a `LocalRegistry` on
its database (for `factory`), and logged-in clients.

One server per test module (starting one costs about 2 s); each module seeds its own
experiment with a unique name. `login(client, token)` does what a browser does: fetch the
form (for its CSRF cookie and field), post the token, keep the session cookie.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import httpx
import pytest

from service.local import LocalRegistry
from tests.dashboards.seed import Seeded, seed
from tests.factories import CHECKPOINT_ROOT
from tests.helpers import LiveServer, start_server


def csrf_of(html: str) -> str:
    """Return the first CSRF token in a page's forms."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def login(client: httpx.Client, token: str) -> httpx.Response:
    """Log `client` in with an API token; return the response after the redirect."""
    form = client.get("/login")
    assert form.status_code == 200, form.text
    return client.post(
        "/login",
        data={"token": token, "csrf_token": csrf_of(form.text), "next": "/"},
        follow_redirects=True,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # seed() records checkpoints under CHECKPOINT_ROOT: declare it, as a shared volume would be.
    home = tmp_path_factory.mktemp("dash") / "home"
    live = start_server(home, storage_roots=[CHECKPOINT_ROOT])
    yield live
    live.stop()


@pytest.fixture(scope="module")
def seeded(server: LiveServer) -> Seeded:
    return seed(
        server.db_url,
        f"sqlite:///{server.home / 'mlflow.db'}",
        experiment=f"orders-{uuid.uuid4().hex[:6]}",
    )


@pytest.fixture(scope="module")
def registry(server: LiveServer) -> LocalRegistry:
    """Return a LocalRegistry on the server's database (the server migrated it)."""
    return LocalRegistry(server.db_url, migrate=False)


@pytest.fixture(scope="module")
def reader(server: LiveServer, seeded: Seeded) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        response = login(client, server.make_token("read", name="viewer"))
        assert response.status_code == 200, response.text
        yield client


@pytest.fixture(scope="module")
def writer(server: LiveServer, seeded: Seeded) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        response = login(client, server.make_token("write", name="releaser"))
        assert response.status_code == 200, response.text
        yield client
