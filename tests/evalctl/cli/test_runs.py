"""`evalctl runs ...`: one-line errors and JSON listings."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import evalctl


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
