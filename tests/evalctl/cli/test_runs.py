"""The CLI surface: fast --help, one-line errors, JSON listings, db upgrade."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import evalctl


def test_help_imports_no_heavy_library():
    code = (
        "import sys\n"
        "sys.argv = ['evalctl', '--help']\n"
        "from evalctl.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'mlflow', 'peft') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr


def test_help_lists_commands(tmp_path: Path):
    out = evalctl("--help", home=tmp_path)
    assert out.returncode == 0
    for command in ("run", "validate", "runs", "db"):
        assert command in out.stdout


def test_validate_ok_and_broken(tmp_path: Path):
    ok = evalctl("validate", "examples/json-extraction/spec.yaml", home=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "ok" in ok.stdout
    broken = tmp_path / "spec.yaml"
    broken.write_text("name: x\ndata: [1\n")
    bad = evalctl("validate", str(broken), home=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.startswith(f"{broken}:")
    assert "Traceback" not in bad.stderr
    as_json = evalctl("validate", str(broken), "--json", home=tmp_path)
    assert as_json.returncode == 2
    assert json.loads(as_json.stdout)[0]["line"] >= 2


def test_unknown_run_is_one_line_exit_2(tmp_path: Path):
    out = evalctl("runs", "show", "999", home=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert "999" in out.stderr and "Traceback" not in out.stderr


def test_bad_status_filter(tmp_path: Path):
    out = evalctl("runs", "list", "--status", "done", home=tmp_path)
    assert out.returncode == 2 and "unknown status 'done'" in out.stderr


def test_empty_listing_json(tmp_path: Path):
    out = evalctl("runs", "list", "--json", home=tmp_path)
    assert out.returncode == 0
    assert json.loads(out.stdout) == {"data": [], "count": 0}


def test_run_without_spec_or_resume(tmp_path: Path):
    out = evalctl("run", home=tmp_path)
    assert out.returncode == 2 and "give a SPEC" in out.stderr


def test_missing_spec_file(tmp_path: Path):
    out = evalctl("run", str(tmp_path / "nope.yaml"), home=tmp_path)
    assert out.returncode == 2
    assert "not found" in out.stderr and "Traceback" not in out.stderr


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
