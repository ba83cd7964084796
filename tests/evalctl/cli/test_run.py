"""`evalctl run`: what it says when there is nothing to run."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import evalctl


def test_run_without_spec_or_resume(tmp_path: Path):
    out = evalctl("run", home=tmp_path)
    assert out.returncode == 2 and "give a SPEC" in out.stderr


def test_missing_spec_file(tmp_path: Path):
    out = evalctl("run", str(tmp_path / "nope.yaml"), home=tmp_path)
    assert out.returncode == 2
    assert "not found" in out.stderr and "Traceback" not in out.stderr
