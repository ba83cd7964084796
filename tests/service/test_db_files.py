"""The embedded databases are private: EVALCTL_HOME 0700, evalctl.db and mlflow.db 0600.

The defect: `evalctl.db` and `mlflow.db` (and SQLite's -wal/-shm files beside them) were
created with the umask's mode, world-readable under the usual 022: anyone on the machine
could read token hashes, specs and every score. Checked on real processes (the CLI and
`evalctl serve`) on a fresh home, under umask 022.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.helpers import evalctl, start_server


@contextmanager
def usual_umask() -> Iterator[None]:
    """Run the block (and the processes it starts) under umask 022."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_cli_creates_a_private_home_and_registry(tmp_path: Path) -> None:
    home = tmp_path / "fresh" / "home"
    with usual_umask():
        done = evalctl("tokens", "create", "--name", "ci", "--scope", "read", home=home)
    assert done.returncode == 0, done.stderr
    assert oct(mode(home)) == oct(0o700)
    assert oct(mode(home / "evalctl.db")) == oct(0o600)


def test_a_registry_an_older_evalctl_left_readable_is_made_private(tmp_path: Path) -> None:
    home = tmp_path / "old"
    with usual_umask():
        assert evalctl("tokens", "list", home=home).returncode == 0
        for name in ("evalctl.db", "evalctl.db-wal"):
            if (home / name).exists():
                (home / name).chmod(0o644)  # as evalctl created them before this fix
        done = evalctl("tokens", "list", home=home)
    assert done.returncode == 0, done.stderr
    assert oct(mode(home / "evalctl.db")) == oct(0o600)


def test_serve_keeps_every_database_file_private(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with usual_umask():
        server = start_server(home)
    try:
        token = server.make_token("read", name="reader")
        # The first /mlflow request opens MLflow's store, creating mlflow.db.
        response = httpx.get(
            f"{server.url}/mlflow/api/2.0/mlflow/experiments/search",
            params={"max_results": 1},
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        files = sorted(p for p in home.iterdir() if ".db" in p.name)
        names = {p.name for p in files}
        assert {"evalctl.db", "evalctl.db-wal", "evalctl.db-shm", "mlflow.db"} <= names
        assert {p.name: oct(mode(p)) for p in files} == {p.name: oct(0o600) for p in files}
        assert oct(mode(home / "admin-token")) == oct(0o600)
    finally:
        server.stop()
