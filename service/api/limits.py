"""Request limits as pure ASGI middleware: the body size, and a token before any body.

`BodySizeLimit`: a declared `Content-Length` over `max_body_bytes` is refused (413) before
any body is read. A chunked (or understated) body is counted as it streams: once the count
passes the limit the app sees a client disconnect, whatever it was about to answer is
dropped, and the client gets 413.

`TokenFirst`: FastAPI reads and parses a JSON body before it runs a route's auth
dependency, so an anonymous client could make the server take in a body of up to
`max_body_bytes` just to be told 401. This middleware looks up the bearer token of every
request under the API prefix first and answers 401 at once, body unread, when it is
missing, unknown, expired or revoked. The routes still check the token's scopes.

Pure ASGI (not `BaseHTTPMiddleware`) so bodies stream through without buffering.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio.to_thread
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.auth import PRINCIPAL_STATE, authenticate

logger = logging.getLogger("evalctl.service")


async def send_json(send: Send, status: int, body: dict[str, Any], headers: Any = ()) -> None:
    """Send a complete JSON response over raw ASGI."""
    payload = json.dumps(body).encode()
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *[(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers],
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})


class BodySizeLimit:
    """Answer 413 to any HTTP request whose body is larger than `max_bytes`."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _detail(self) -> dict[str, Any]:
        return {"detail": f"request body larger than {self.max_bytes} bytes"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared and declared.strip().isdigit() and int(declared) > self.max_bytes:
            await send_json(send, 413, self._detail(), [("connection", "close")])
            return
        received = 0
        too_large = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if too_large:
                if not started:  # drop the app's own answer; the client gets 413
                    started = True
                    await send_json(send, 413, self._detail(), [("connection", "close")])
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not too_large:
                raise
        if too_large and not started:
            await send_json(send, 413, self._detail(), [("connection", "close")])


class TokenFirst:
    """Answer 401 to a request under `prefix` without a live bearer token, body unread."""

    def __init__(self, app: ASGIApp, *, prefix: str, engine: Engine) -> None:
        self.app = app
        self.prefix = prefix.rstrip("/")
        self.engine = engine

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == self.prefix or path.startswith(self.prefix + "/")):
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope)
        if token is None:
            detail = "missing bearer token (Authorization: Bearer <token>)"
        else:
            try:
                principal = await anyio.to_thread.run_sync(authenticate, self.engine, token)
            except OperationalError as exc:
                logger.warning("database unavailable: %s", str(exc).strip().splitlines()[0])
                await send_json(send, 503, {"detail": "database unavailable"})
                return
            if principal is not None:
                # The route's auth dependency reuses it: one token lookup per request.
                scope.setdefault("state", {})[PRINCIPAL_STATE] = (token, principal)
                await self.app(scope, receive, send)
                return
            detail = "invalid, expired or revoked token"
        # The body was never read: close, so the client stops sending it.
        headers = [("www-authenticate", "Bearer"), ("connection", "close")]
        await send_json(send, 401, {"detail": detail}, headers)


def bearer_token(scope: Scope) -> str | None:
    """Return the token of an `Authorization: Bearer <token>` header, if there is one."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None
