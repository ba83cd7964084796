"""`evalctl compare` through the real CLI on two tiny trained runs (see conftest)."""

from __future__ import annotations

import json

import pytest

from tests.evalctl.cli.conftest import assert_one_line_error, cli


def test_compare_shows_param_differences_and_paired_tests(trained: dict) -> None:
    out = cli(trained, "compare", "1", "2", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["params"] == {"training.learning_rate": [0.001, 0.005]}
    assert [r["run_id"] for r in doc["refs"]] == [1, 2]
    metrics = {m["metric"]: m for m in doc["metrics"]}
    assert {"eval_loss", "perplexity.ppl", "json_schema.valid_rate"} <= set(metrics)
    nll = metrics["perplexity.nll"]
    assert nll["higher_is_better"] is False
    assert nll["deltas"][1] == pytest.approx(nll["values"][1] - nll["values"][0])
    test = nll["tests"][1]
    assert test["method"] == "paired_t" and test["n"] == 6 and 0.0 <= test["p_value"] <= 1.0
    exact = metrics["json_schema.exact_match"]["tests"][1]
    assert exact["method"] == "mcnemar_exact" and exact["n"] == 5

    everything = json.loads(cli(trained, "compare", "1", "2", "--all-params", "--json").stdout)
    assert everything["params"]["training.max_steps"] == [4, 4]
    table = cli(trained, "compare", "run:1", "2")
    assert "training.learning_rate" in table.stdout and "paired_t" in table.stdout


def test_bad_refs_exit_2_with_one_line(trained: dict) -> None:
    cases = [
        (("compare", "1", "ckpt:99999"), "checkpoint 99999 not found"),
        (("compare", "1", "run:nope"), "run 'nope' not found"),
        (("compare", "1", "@production"), "@production needs an experiment"),
        (("compare", "1"), "at least two refs"),
    ]
    for args, message in cases:
        assert_one_line_error(cli(trained, *args), message)
