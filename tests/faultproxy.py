"""A loopback HTTP proxy that loses answers on purpose, for testing retried writes.

`FaultProxy(target)` listens on a free loopback port and forwards every request to
`target` (a real `evalctl serve`). `fail(method, path, times=N, answer=...)` picks
requests: the first N that match (after `skip` more) are forwarded (so the service does
the work and commits), then their answer is lost: the connection is closed without a response
(`answer="drop"`, what a client sees when a proxy or the service dies mid-answer) or
replaced by a status such as 504 or 500. `after` runs between the two (e.g. to SIGKILL the
service). With `forward=False` the request never reaches the service: it is answered at
once (a gateway in front of a service that is down). A target that cannot be reached is
answered 502, as a real gateway would.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import httpx

#: Headers that describe one hop, not the message; never forwarded.
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass
class Rule:
    """Lose the answer of `times` requests matching `method` and `path`, after `skip`."""

    method: str
    path: str
    times: int
    answer: str | int
    after: Callable[[], None] | None = None
    skip: int = 0
    forward: bool = True
    matched: int = 0
    hits: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take(self, method: str, path: str) -> bool:
        """Return whether this request's answer is to be lost (and count it)."""
        if method != self.method or not re.fullmatch(self.path, path):
            return False
        with self.lock:
            self.matched += 1
            if self.matched <= self.skip or self.hits >= self.times:
                return False
            self.hits += 1
            return True

    def stop(self) -> None:
        """Lose no more answers (the fault is over)."""
        with self.lock:
            self.times = self.hits


class FaultProxy:
    """Forward to `target`; lose the answers that the rules pick."""

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.rules: list[Rule] = []
        #: (method, path, status) of every request; status 0 for a dropped answer.
        self.seen: list[tuple[str, str, int]] = []
        self._upstream = httpx.Client(base_url=self.target, timeout=120.0)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """Return the proxy's base URL (give it to clients instead of the target's)."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def fail(
        self,
        method: str,
        path: str,
        *,
        times: int = 1,
        answer: str | int = "drop",
        after: Callable[[], None] | None = None,
        skip: int = 0,
        forward: bool = True,
    ) -> Rule:
        """Lose the answer of `times` requests to `path` (a regex, full match) after `skip`."""
        rule = Rule(method.upper(), path, times, answer, after, skip, forward)
        self.rules.append(rule)
        return rule

    def count(self, method: str, path: str) -> int:
        """Return how many requests to `path` (regex) the proxy forwarded."""
        return sum(1 for m, p, _ in self.seen if m == method.upper() and re.fullmatch(path, p))

    def close(self) -> None:
        """Stop listening and close the upstream connections."""
        self._server.shutdown()
        self._server.server_close()
        self._upstream.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = urlsplit(self.path).path
                rule = next((r for r in proxy.rules if r.take(self.command, path)), None)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                headers["Accept-Encoding"] = "identity"
                if rule is not None and not rule.forward:
                    self._lose(rule, path)
                    return
                try:
                    upstream = proxy._upstream.request(
                        self.command, self.path, content=body, headers=headers
                    )
                except httpx.TransportError as exc:
                    proxy.seen.append((self.command, path, 502))
                    self._answer(
                        502, b'{"detail": "bad gateway: %s"}' % type(exc).__name__.encode()
                    )
                    return
                if rule is None:
                    proxy.seen.append((self.command, path, upstream.status_code))
                    self._answer(upstream.status_code, upstream.content, upstream.headers)
                    return
                if rule.after is not None:
                    rule.after()
                self._lose(rule, path)

            def _lose(self, rule: Rule, path: str) -> None:
                if rule.answer == "drop":
                    proxy.seen.append((self.command, path, 0))
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                status = int(rule.answer)
                proxy.seen.append((self.command, path, status))
                self._answer(status, b'{"detail": "injected by the test proxy"}')

            def _answer(
                self, status: int, body: bytes, headers: httpx.Headers | None = None
            ) -> None:
                self.send_response(status)
                for key, value in (headers or {"content-type": "application/json"}).items():
                    if key.lower() not in HOP_HEADERS | {"content-encoding", "date", "server"}:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        return Handler


@contextmanager
def fault_proxy(target: str) -> Iterator[FaultProxy]:
    """Yield a `FaultProxy` in front of `target`, closed afterwards."""
    proxy = FaultProxy(target)
    try:
        yield proxy
    finally:
        proxy.close()
