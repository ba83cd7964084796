"""Dashboard fixtures: a live `evalctl serve` with a seeded registry, and logged-in clients.

One server per test module (starting one costs about 2 s); each module seeds its own
experiment with a unique name. `login(client, token)` does what a browser does: fetch the
form (for its CSRF cookie and field), post the token, keep the session cookie.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.dashboards.seed import Seeded, seed
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
    # seed() records checkpoints under /ckpts: declare it, as a shared volume would be.
    live = start_server(tmp_path_factory.mktemp("dash") / "home", storage_roots=["/ckpts"])
    yield live
    live.stop()


@pytest.fixture(scope="module")
def seeded(server: LiveServer) -> Seeded:
    home: Path = server.home
    return seed(
        f"sqlite:///{home / 'evalctl.db'}",
        f"sqlite:///{home / 'mlflow.db'}",
        experiment=f"orders-{uuid.uuid4().hex[:6]}",
    )


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
