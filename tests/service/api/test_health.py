"""Health probes and a Postgres-backed server: /healthz, /readyz 200 and 503."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.db import current_revision, downgrade, head_revisions
from tests.helpers import LiveServer, start_server
from tests.service.conftest import _database


def test_readyz_is_503_on_an_empty_db_without_migrations(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    server = start_server(tmp_path / "home", url, migrate=False)
    try:
        with server.client() as client:
            assert client.get("/healthz").status_code == 200
            response = client.get("/readyz")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "unavailable"
        assert "revision none" in body["reason"]
        assert not (server.home / "admin-token").exists()  # no tables to hold a token
    finally:
        server.stop()


def test_readyz_is_503_at_an_old_revision(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    from service.db import upgrade

    upgrade(url, "0001")
    server = start_server(tmp_path / "home", url, migrate=False)
    try:
        with server.client() as client:
            response = client.get("/readyz")
        assert response.status_code == 503
        assert "revision 0001" in response.json()["reason"]
    finally:
        server.stop()


def test_readyz_is_200_at_head(server: LiveServer) -> None:
    with server.client() as client:
        response = client.get("/readyz")
    assert response.status_code == 200
    assert {response.json()["revision"]} == head_revisions()


@pytest.mark.postgres
def test_postgres_server_migrates_serves_and_goes_unready(tmp_path: Path) -> None:
    with _database("postgres", tmp_path) as url:
        server = start_server(tmp_path / "home", url)
        try:
            with server.client() as anonymous:
                assert anonymous.get("/readyz").status_code == 200
                assert anonymous.get("/api/v1/runs").status_code == 401
            assert {current_revision(url)} == head_revisions()
            with server.client(server.admin_token) as admin:
                experiment = admin.post("/api/v1/experiments", json={"name": "pg"}).json()
                run = admin.post(
                    "/api/v1/runs",
                    json={
                        "name": "r",
                        "experiment_id": experiment["id"],
                        "spec_text": "x",
                        "spec_hash": "a" * 64,
                        "tags": {"k": "ünï 🚀"},
                    },
                ).json()
                assert admin.get(f"/api/v1/runs/{run['id']}").json()["tags"] == {"k": "ünï 🚀"}
                # A NUL byte cannot be stored by Postgres: 422, not 500.
                nul = admin.post("/api/v1/experiments", json={"name": "a\u0000b"})
                assert nul.status_code == 422, nul.text
                assert admin.get("/api/v1/experiments/a%00b").status_code in (404, 422)
                downgrade(url, "0002")
                unready = admin.get("/readyz")
                assert unready.status_code == 503
                assert "revision 0002" in unready.json()["reason"]
        finally:
            server.stop()
