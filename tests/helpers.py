"""Test helpers: run the real CLI in subprocesses, small specs and data, and the one launcher
of a real `evalctl serve` that tests and benchmarks share.

`start_server` runs `evalctl serve` on a loopback port (a free one, or a given one so that a
restarted service comes back where its clients look) with a clean environment: no
`EVALCTL_*` variable of the caller leaks in, only what is passed (database, MLflow store,
storage roots, `--no-migrate`, extra `env`). It waits for `/readyz` (`/healthz` when the
schema is not migrated on start) and returns a `LiveServer`: URL, home, database URL, log,
the first-start admin token, `make_token`, `client` and `stop`. Fixtures that scope servers
live in each package's conftest; test data comes from `tests/factories.py`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT_S = 60.0


def evalctl(
    *args: str, home: Path, cwd: Path | None = None, timeout: float = 600, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run `python -m evalctl ARGS` with EVALCTL_HOME=home and return the finished process."""
    inherited = {k: v for k, v in os.environ.items() if k != "EVALCTL_DATABASE_URL"}
    full_env = {**inherited, "EVALCTL_HOME": str(home), "COLUMNS": "200", **env}
    return subprocess.run(
        [sys.executable, "-m", "evalctl", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write rows as JSONL."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def order_rows(n: int, offset: int = 0) -> list[dict[str, str]]:
    """Return n distinct vertex rows: an order message and its JSON."""
    rows = []
    for i in range(offset, offset + n):
        order = {"customer": f"Customer {i}", "qty": i % 9 + 1}
        rows.append(
            {
                "input_text": f"Order {i}: {order['qty']} lamps for {order['customer']}.",
                "output_text": json.dumps(order),
            }
        )
    return rows


def write_tiny_spec(folder: Path, model_dir: Path, **training: Any) -> Path:
    """Write a small vertex-format spec (tiny model, both evaluators) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "train.jsonl", order_rows(24))
    write_jsonl(folder / "eval.jsonl", order_rows(6, offset=100))
    prompts = [
        {"id": f"p{i}", "input_text": r["input_text"], "reference": json.loads(r["output_text"])}
        for i, r in enumerate(order_rows(5, offset=200))
    ]
    write_jsonl(folder / "prompts.jsonl", prompts)
    schema = {
        "type": "object",
        "properties": {"customer": {"type": "string"}, "qty": {"type": "integer"}},
        "required": ["customer", "qty"],
    }
    (folder / "schema.json").write_text(json.dumps(schema))
    spec = {
        "name": "tiny-orders",
        "base_model": {"path": str(model_dir)},
        "data": {"train": "train.jsonl", "eval": "eval.jsonl", "format": "vertex"},
        "training": {
            "method": "lora",
            "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
            "max_steps": 4,
            "batch_size": 4,
            "max_seq_len": 96,
            "learning_rate": 1e-3,
            "save_every_steps": 2,
            **training,
        },
        "evaluators": [
            {"perplexity": {"data": "eval.jsonl"}},
            {
                "json_schema": {
                    "prompts": "prompts.jsonl",
                    "schema": "schema.json",
                    "max_new_tokens": 12,
                }
            },
        ],
        "best_checkpoint": {"metric": "perplexity.ppl", "mode": "min"},
    }
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@dataclass
class LiveServer:
    """A running `evalctl serve` on a loopback port, with the admin token it wrote."""

    url: str
    home: Path
    process: subprocess.Popen[bytes]
    db_url: str
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
        """Return a client for the server, sending `token` (default: none) as bearer."""
        sent = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=sent | (headers or {}), timeout=60.0)

    def make_token(self, *scopes: str, name: str = "test") -> str:
        """Create a token with `scopes` through the API; return the plain token."""
        with self.client(self.admin_token) as admin:
            response = admin.post("/api/v1/tokens", json={"name": name, "scopes": list(scopes)})
        assert response.status_code == 201, response.text
        return str(response.json()["token"])

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def free_port() -> int:
    """Return a loopback port that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    home: Path,
    db_url: str | None = None,
    *,
    port: int | None = None,
    migrate: bool = True,
    storage_roots: list[Path | str] | None = None,
    mlflow_uri: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = STARTUP_TIMEOUT_S,
) -> LiveServer:
    """Start `evalctl serve` (SQLite under `home` unless `db_url`) and wait until it answers.

    `storage_roots`: where runners' checkpoints live besides `home` (their shared volume).
    `env`: extra variables for the server process, applied last.
    """
    port = port or free_port()
    home.mkdir(parents=True, exist_ok=True)
    log = home / "server.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("EVALCTL_")}
    full_env |= {"EVALCTL_HOME": str(home), "PYTHONPATH": str(REPO_ROOT)}
    if db_url:
        full_env["EVALCTL_DATABASE_URL"] = db_url
    if mlflow_uri:
        full_env["EVALCTL_MLFLOW_URI"] = mlflow_uri
    if storage_roots:
        full_env["EVALCTL_STORAGE__ROOTS"] = json.dumps([str(root) for root in storage_roots])
    full_env |= env or {}
    command = [sys.executable, "-m", "evalctl", "serve", "--port", str(port)]
    if not migrate:
        command.append("--no-migrate")
    with log.open("ab") as out:
        process = subprocess.Popen(command, env=full_env, stdout=out, stderr=subprocess.STDOUT)
    database = db_url or f"sqlite:///{home / 'evalctl.db'}"
    server = LiveServer(f"http://127.0.0.1:{port}", home, process, database, log)
    probe = f"{server.url}/readyz" if migrate else f"{server.url}/healthz"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"evalctl serve exited:\n{log.read_text()}")
        try:
            if httpx.get(probe, timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"evalctl serve did not start:\n{log.read_text()}")
