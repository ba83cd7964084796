"""`evalctl validate`: ok, or one located line per problem (and JSON)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import evalctl


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
