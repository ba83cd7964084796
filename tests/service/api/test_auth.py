"""Bearer-token auth as clients see it: 401/403 JSON, scopes, first-start admin token."""

from __future__ import annotations

import re
import stat
from datetime import timedelta

import pytest
from sqlmodel import Session
from starlette.routing import Mount

from service import crud
from service.db import get_engine
from service.models import utcnow
from tests.helpers import LiveServer

PUBLIC_PATHS = {"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def test_admin_token_file_is_private_and_works(server: LiveServer) -> None:
    path = server.home / "admin-token"
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == 0o600, oct(mode)
    token = server.admin_token
    assert token.startswith("evk_")
    log = server.log.read_text()
    assert str(path) in log  # says where the token is ...
    assert token not in log  # ... never the token itself
    with server.client(token) as client:
        assert client.get("/api/v1/tokens").status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer evk_not-a-real-token"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
    ],
    ids=["none", "wrong", "basic", "empty"],
)
def test_missing_or_wrong_token_is_401_json(server: LiveServer, headers: dict[str, str]) -> None:
    with server.client(headers=headers) as client:
        response = client.get("/api/v1/runs")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["detail"]


def test_revoked_token_is_401(server: LiveServer, admin) -> None:
    token = server.make_token("read", name="to-revoke")
    with server.client(token) as client:
        assert client.get("/api/v1/runs").status_code == 200
        token_id = next(
            t["id"]
            for t in admin.get("/api/v1/tokens").json()["data"]
            if token.startswith(t["prefix"]) and t["name"] == "to-revoke"
        )
        revoked = admin.delete(f"/api/v1/tokens/{token_id}")
        assert revoked.status_code == 200
        assert revoked.json()["revoked_at"] is not None
        response = client.get("/api/v1/runs")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_expired_token_is_401(server: LiveServer) -> None:
    with Session(get_engine(server.db_url)) as session:
        plain, _ = crud.create_token(
            session=session,
            name="expired",
            scopes=["read"],
            expires_at=utcnow() - timedelta(seconds=1),
        )
    with server.client(plain) as client:
        response = client.get("/api/v1/experiments")
    assert response.status_code == 401
    assert response.json()["detail"] == "invalid, expired or revoked token"


def test_token_list_never_shows_secrets(server: LiveServer, admin) -> None:
    token = server.make_token("read", name="secret-check")
    listing = admin.get("/api/v1/tokens").text
    assert token not in listing
    assert token[:8] in listing  # the prefix tells tokens apart


@pytest.mark.parametrize(
    ("scopes", "method", "path", "body", "expected"),
    [
        (["read"], "POST", "/api/v1/experiments", {"name": "x"}, 403),
        (["read"], "POST", "/api/v1/jobs/claim", {"runner_id": 1}, 403),
        (["read"], "GET", "/api/v1/tokens", None, 403),
        (["write"], "GET", "/api/v1/tokens", None, 403),
        (["write"], "POST", "/api/v1/runners", {"name": "w"}, 403),
        (["runner"], "POST", "/api/v1/jobs", {"kind": "train", "spec_text": "x"}, 403),
        (["runner"], "POST", "/api/v1/jobs/1/cancel", None, 403),
        (
            ["runner"],
            "PUT",
            "/api/v1/aliases/1/production",
            {"checkpoint_id": 1, "actor": "a"},
            403,
        ),
        (["runner"], "POST", "/api/v1/tokens", {"name": "n", "scopes": ["admin"]}, 403),
        (["write"], "GET", "/api/v1/runs", None, 200),  # write implies read
        (["runner"], "GET", "/api/v1/runs", None, 200),  # runners read what they resume
        (["runner"], "POST", "/api/v1/experiments", {"name": "scope-runner"}, 200),
        (["write"], "POST", "/api/v1/experiments", {"name": "scope-write"}, 200),
        (["admin"], "POST", "/api/v1/runners", {"name": "scope-admin-runner"}, 200),
    ],
)
def test_scopes(server: LiveServer, scopes, method, path, body, expected) -> None:
    token = server.make_token(*scopes)
    with server.client(token) as client:
        response = client.request(method, path, json=body)
    assert response.status_code == expected, response.text
    if expected == 403:
        assert "scope" in response.json()["detail"]


def _route_table(app) -> list[tuple[str, str | None, set[str] | None]]:
    """Return (kind, path, methods) for every route, through FastAPI's included routers."""
    try:  # FastAPI >= 0.16x includes routers lazily; app.routes holds the routers
        from fastapi.routing import iter_route_contexts

        routes = [ctx.original_route for ctx in iter_route_contexts(app.routes)]
        paths = [ctx.path for ctx in iter_route_contexts(app.routes)]
    except ImportError:
        routes = list(app.routes)
        paths = [getattr(r, "path", None) for r in routes]
    table = []
    for route, path in zip(routes, paths, strict=True):
        kind = "mount" if isinstance(route, Mount) else type(route).__name__
        table.append((kind, path, getattr(route, "methods", None)))
    return table


def test_every_route_except_health_requires_a_token(server: LiveServer, evalctl_home) -> None:
    from service.app import create_app

    table = _route_table(create_app(migrate=False, dashboard=False))
    requests = []
    for kind, path, methods in table:
        assert path is not None
        if kind == "mount":
            requests += [("GET", f"{path}/api/2.0/mlflow/experiments/search")]
            requests += [("POST", f"{path}/api/2.0/mlflow/runs/create")]
        elif path not in PUBLIC_PATHS:
            concrete = re.sub(r"\{[^}]+\}", "1", path)
            requests += [(m, concrete) for m in sorted(methods or ()) if m != "HEAD"]
    assert len(requests) >= 35
    with server.client() as client:
        for method, path in requests:
            response = client.request(method, path)
            assert response.status_code == 401, (method, path, response.status_code)
            assert response.headers.get("www-authenticate") == "Bearer", (method, path)
            assert response.json()["detail"]
    api_paths = {path for kind, path, _ in table if kind == "APIRoute"}
    assert {"/healthz", "/readyz"} <= api_paths
    assert "/api/v1/jobs/claim" in api_paths


def test_public_paths_need_no_token(server: LiveServer) -> None:
    with server.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").status_code == 200
        assert client.get("/openapi.json").json()["components"]["securitySchemes"]["HTTPBearer"]
