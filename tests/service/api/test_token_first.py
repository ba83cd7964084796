"""An API request without a live token is refused before its body is read.

The attack: FastAPI parsed a JSON body (up to `max_body_bytes`, 32 MiB) before the route's
auth dependency said 401, so anyone could make the server read and parse 30 MiB per
request. Here the request declares a 30 MiB body and sends none of it: the 401 must come
anyway (the old server waited for the body).
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import pytest

from tests.helpers import LiveServer

BODY_BYTES = 30 * 1024 * 1024


def _answer_without_body(server: LiveServer, path: str, authorization: str | None) -> str:
    """Send a POST's headers declaring a 30 MiB body, send no body; return the status line."""
    url = urlsplit(server.url)
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: {url.netloc}",
        "Content-Type: application/json",
        f"Content-Length: {BODY_BYTES}",
    ]
    if authorization is not None:
        head.append(f"Authorization: {authorization}")
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)  # a timeout here means the server waits for the body
            if not chunk:
                break
            received += chunk
    return received.split(b"\r\n", 1)[0].decode()


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Basic dXNlcjpwYXNz", "Bearer evalctl_not-a-real-token"],
    ids=["no-header", "empty-bearer", "basic", "unknown-token"],
)
@pytest.mark.parametrize("path", ["/api/v1/runs", "/api/v1/jobs", "/api/v1/evaluations"])
def test_401_comes_before_the_body(
    server: LiveServer, path: str, authorization: str | None
) -> None:
    assert _answer_without_body(server, path, authorization) == "HTTP/1.1 401 Unauthorized"


def test_revoked_token_is_refused_before_the_body(server: LiveServer) -> None:
    token = server.make_token("write", name="soon-revoked")
    with server.client(server.admin_token) as admin:
        listed = admin.get("/api/v1/tokens").json()
        token_id = next(t["id"] for t in listed["data"] if token.startswith(t["prefix"]))
        assert admin.delete(f"/api/v1/tokens/{token_id}").status_code in (200, 204)
    answer = _answer_without_body(server, "/api/v1/runs", f"Bearer {token}")
    assert answer == "HTTP/1.1 401 Unauthorized"


def test_the_401_says_why_and_live_tokens_still_work(server: LiveServer) -> None:
    with server.client() as anonymous:
        missing = anonymous.post("/api/v1/runs", json={"name": "x"})
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        assert missing.json() == {"detail": "missing bearer token (Authorization: Bearer <token>)"}
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.get("/openapi.json").status_code == 200
    with server.client("evalctl_wrong") as wrong:
        assert wrong.get("/api/v1/runs").json() == {"detail": "invalid, expired or revoked token"}
    with server.client(server.make_token("read")) as reader:
        assert reader.get("/api/v1/runs").status_code == 200
        # The scope is still the route's to check (and the body is parsed for a live token).
        assert reader.post("/api/v1/experiments", json={"name": "r"}).status_code == 403
