"""CUDA training path: the tiny spec trained on the GPU (skipped without CUDA)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import evalctl, write_tiny_spec

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_tiny_run_on_cuda(tmp_path: Path, tiny_model_dir: Path):
    home = tmp_path / "home"
    spec = write_tiny_spec(tmp_path / "exp", tiny_model_dir, device="cuda")
    done = evalctl("run", str(spec), home=home)
    assert done.returncode == 0, done.stderr
    info = json.loads(evalctl("runs", "show", "1", "--json", home=home).stdout)
    assert [c["step"] for c in info["checkpoints"]] == [0, 2, 4]
    assert all(e["status"] == "succeeded" for e in info["evaluations"])
