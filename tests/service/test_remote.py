"""`ApiClient`'s retries against a real loopback HTTP server that always fails.

A 500 is a bug in the service, not an outage: a read that gets one must fail at once with
the service's message (not hang for the retry budget and hide it), and a write, which
carries an `Idempotency-Key`, is tried again only a couple of times. 502/503/504 (a
gateway in front of a service that is restarting) are waited out for the whole budget.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from service.errors import EvalctlError
from service.remote import ApiClient, ServiceUnavailableError


class Failing:
    """A loopback server answering every request with `status`; it records what it got."""

    def __init__(self) -> None:
        self.status = 500
        self.seen: list[tuple[str, str | None]] = []  # (method, Idempotency-Key)
        failing = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                failing.seen.append((self.command, self.headers.get("Idempotency-Key")))
                body = json.dumps({"detail": "boom: a bug in the route"}).encode()
                self.send_response(failing.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def failing() -> Iterator[Failing]:
    server = Failing()
    yield server
    server.close()


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_read_answered_500_fails_at_once_with_the_services_message(
    failing: Failing, method: str
) -> None:
    client = ApiClient(failing.url, "evk_test", retry_for=5)
    with pytest.raises(EvalctlError) as raised:
        client.call(method, "/runs/1")
    assert not isinstance(raised.value, ServiceUnavailableError)
    assert "500" in str(raised.value)
    if method == "GET":
        assert "boom: a bug in the route" in str(raised.value)
    assert [m for m, _ in failing.seen] == [method]  # asked once, not for 5 s


def test_a_write_answered_500_is_retried_twice_with_its_key(failing: Failing) -> None:
    client = ApiClient(failing.url, "evk_test", retry_for=30)
    with pytest.raises(EvalctlError, match="boom: a bug in the route") as raised:
        client.send("POST", "/runs", {"name": "r"})
    assert not isinstance(raised.value, ServiceUnavailableError)
    assert [m for m, _ in failing.seen] == ["POST"] * 3
    keys = {key for _, key in failing.seen}
    assert len(keys) == 1 and None not in keys  # one write, sent three times


@pytest.mark.parametrize("status", [502, 503, 504])
def test_a_gateway_error_is_waited_out_for_the_whole_budget(failing: Failing, status: int) -> None:
    failing.status = status
    client = ApiClient(failing.url, "evk_test", retry_for=1.5)
    with pytest.raises(ServiceUnavailableError, match=f"answered {status}.*gave up after 1.5 s"):
        client.get("/runs/1")
    assert len(failing.seen) >= 3  # 0, 0.25, 0.75, 1.5 s: retried until the deadline
