"""`evalctl tokens create/list/revoke` on the database, and the tokens they make on the API."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.helpers import REPO_ROOT, LiveServer


def evalctl(server: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EVALCTL_HOME": str(server.home), "EVALCTL_DATABASE_URL": server.db_url}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run(
        [sys.executable, "-m", "evalctl", *args], env=env, capture_output=True, text=True
    )


def test_tokens_cli_create_list_revoke(server: LiveServer) -> None:
    created = evalctl(
        server,
        "tokens",
        "create",
        "--name",
        "cli-ci",
        "--scope",
        "read",
        "--scope",
        "write",
        "--expires-in-days",
        "1",
    )
    assert created.returncode == 0, created.stderr
    plain = created.stdout.strip()
    assert plain.startswith("evk_")
    assert "not shown again" in created.stderr
    with server.client(plain) as client:
        assert client.post("/api/v1/experiments", json={"name": "cli-token"}).status_code == 200

    listed = evalctl(server, "tokens", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["cli-ci"]["scopes"] == ["read", "write"]
    assert rows["cli-ci"]["expires_at"] is not None
    assert plain not in listed.stdout

    revoked = evalctl(server, "tokens", "revoke", str(rows["cli-ci"]["id"]))
    assert revoked.returncode == 0, revoked.stderr
    with server.client(plain) as client:
        assert client.get("/api/v1/runs").status_code == 401


def test_tokens_cli_user_errors_exit_2(server: LiveServer) -> None:
    bad_scope = evalctl(server, "tokens", "create", "--name", "x", "--scope", "raed")
    assert bad_scope.returncode == 2
    assert "Did you mean 'read'" in bad_scope.stderr
    assert "Traceback" not in bad_scope.stderr
    missing = evalctl(server, "tokens", "revoke", "999999")
    assert missing.returncode == 2
    assert "not found" in missing.stderr
