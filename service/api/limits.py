"""Request-body size limit as a pure ASGI middleware (413 above `max_body_bytes`).

A declared `Content-Length` over the limit is refused before any body is read. A chunked
(or understated) body is counted as it streams: once the count passes the limit the app
sees a client disconnect, whatever it was about to answer is dropped, and the client gets
413. Pure ASGI (not `BaseHTTPMiddleware`) so bodies stream through without buffering.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


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
