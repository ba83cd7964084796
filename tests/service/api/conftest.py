"""Real `evalctl serve` processes on loopback ports, and httpx clients for them.

`server` is one SQLite-backed server shared by the package's tests (they use unique names
and labels, never a wiped DB); `start_server` starts others (Postgres, --no-migrate,
a fresh DB for schemathesis). Each is the real CLI in a subprocess, so the first-start
admin token, migrations on start and uvicorn are exercised as a user runs them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
STARTUP_TIMEOUT_S = 60.0
#: The smallest spec that `POST /api/v1/jobs` accepts (its files are not checked there).
JOB_SPEC_TEXT = "name: job\nbase_model: ./model\ndata: {train: train.jsonl, format: vertex}\n"


@dataclass
class Server:
    """A running `evalctl serve` process."""

    base: str
    home: Path
    db_url: str
    process: subprocess.Popen[bytes]
    log: Path
    _admin: str | None = field(default=None, repr=False)

    @property
    def admin_token(self) -> str:
        """Return the admin token the server wrote on first start."""
        if self._admin is None:
            self._admin = (self.home / "admin-token").read_text().strip()
        return self._admin

    def client(
        self, token: str | None = None, *, headers: dict[str, str] | None = None
    ) -> httpx.Client:
        """Return a client for the API, sending `token` (default: none) as bearer."""
        sent = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base, headers=sent | (headers or {}), timeout=60.0)

    def make_token(self, *scopes: str, name: str = "test") -> str:
        """Create a token with `scopes` through the API; return the plain token."""
        with self.client(self.admin_token) as admin:
            response = admin.post("/api/v1/tokens", json={"name": name, "scopes": list(scopes)})
        assert response.status_code == 201, response.text
        return str(response.json()["token"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    home: Path, db_url: str, *, migrate: bool = True, env: dict[str, str] | None = None
) -> Server:
    """Start `evalctl serve` on a free port and wait until /healthz answers."""
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    log = home / "server.log"
    full_env = {
        **os.environ,
        "EVALCTL_HOME": str(home),
        "EVALCTL_DATABASE_URL": db_url,
        "PYTHONPATH": str(REPO_ROOT),
        **(env or {}),
    }
    full_env.pop("EVALCTL_MLFLOW_URI", None)
    command = [sys.executable, "-m", "evalctl", "serve", "--port", str(port)]
    if not migrate:
        command.append("--no-migrate")
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=full_env, stdout=out, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", home, db_url, process, log)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"evalctl serve exited:\n{log.read_text()}")
        try:
            if httpx.get(f"{server.base}/healthz", timeout=1.0).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    stop_server(server)
    raise RuntimeError(f"evalctl serve did not start:\n{log.read_text()}")


def stop_server(server: Server) -> None:
    """Stop the server process (SIGTERM, then SIGKILL)."""
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Return a server on a fresh SQLite registry, shared by the API tests."""
    home = tmp_path_factory.mktemp("api-home")
    running = start_server(home, f"sqlite:///{home / 'evalctl.db'}")
    yield running
    stop_server(running)


@pytest.fixture
def admin(server: Server) -> Iterator[httpx.Client]:
    """Return a client sending the server's first-start admin token."""
    with server.client(server.admin_token) as client:
        yield client
