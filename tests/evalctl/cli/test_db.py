"""`evalctl db upgrade` on the real PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import evalctl


@pytest.mark.postgres
def test_db_upgrade_on_postgres(tmp_path: Path, unique_name: str):
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True)
    except psycopg.OperationalError:
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    name = unique_name.replace("-", "_")
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = f"postgresql://postgres@127.0.0.1:5432/{name}"
        out = evalctl("db", "upgrade", home=tmp_path, EVALCTL_DATABASE_URL=url)
        assert out.returncode == 0, out.stderr
        assert "upgraded to head" in out.stdout
        with psycopg.connect(url) as conn:
            tables = {r[0] for r in conn.execute("select tablename from pg_tables")}
        assert {"run", "checkpoint", "evaluation", "eval_example"} <= tables
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
