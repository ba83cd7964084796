"""Tests for statistical gate rules on per-example scores recorded through a real registry.

Each side is a run -> checkpoint -> evaluation with its examples, written with the
registry's own methods; the gate pairs the examples by id and tests for a drop.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from service.gate import stats
from service.gate.rule_spec import DropTest, StatisticalRule
from service.gate.rules import evaluate_gate
from tests.service.gate.conftest import Side


def _binary(correct: list[int]) -> list[dict[str, float]]:
    return [{"correct": float(v)} for v in correct]


def _drop(n: int, accuracy: float, worse: int, better: int) -> tuple[list[int], list[int]]:
    """Return baseline and candidate 0/1 outcomes: `worse` items flip 1->0, `better` 0->1."""
    base = [1 if i < int(n * accuracy) else 0 for i in range(n)]
    cand = list(base)
    for i in range(worse):
        cand[i] = 0
    for i in range(better):
        cand[n - 1 - i] = 1
    return base, cand


def _rule(metric: str = "classification.correct", **test: Any) -> StatisticalRule:
    return StatisticalRule(metric=metric, no_significant_drop=DropTest(**test))


def test_a_real_three_point_drop_over_2000_items_fails(registry: Any, side: Side) -> None:
    base_scores, cand_scores = _drop(2000, 0.80, worse=100, better=40)  # -3 points
    base = side(
        metrics={"classification": {"accuracy": 0.80}},
        examples={"classification": _binary(base_scores)},
    )
    cand = side(
        metrics={"classification": {"accuracy": 0.77}},
        examples={"classification": _binary(cand_scores)},
    )
    result = evaluate_gate(registry=registry, rules=[_rule()], candidate=cand, baseline=base)
    rule = result.rules[0]
    assert rule.verdict == "fail" and result.verdict == "fail"
    assert rule.method == "mcnemar_exact (b=100, c=40)"
    assert rule.n == 2000
    assert rule.delta == pytest.approx(-0.03)
    assert rule.p_value is not None and rule.p_value < 1e-5
    assert rule.ci_low is not None and rule.ci_high is not None and rule.ci_high < 0
    assert rule.reason.startswith("significant drop: delta -0.03")
    assert not rule.warnings  # 2,000 items can see a 4-point drop (5% of 0.8)


def test_noise_over_50_items_passes_with_an_mde_warning(registry: Any, side: Side) -> None:
    base_scores, cand_scores = _drop(50, 0.80, worse=2, better=2)
    base = side(examples={"classification": _binary(base_scores)})
    cand = side(examples={"classification": _binary(cand_scores)})
    result = evaluate_gate(registry=registry, rules=[_rule()], candidate=cand, baseline=base)
    rule = result.rules[0]
    assert rule.verdict == "pass" and result.passed
    assert rule.p_value is not None and rule.p_value > 0.5
    assert rule.mde is not None and rule.mde > 0.04
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith("eval set too small to see a drop of 0.04 in ")
    assert "n=50" in result.warnings[0]


def test_max_mde_sets_the_warning_level(registry: Any, side: Side) -> None:
    base_scores, cand_scores = _drop(50, 0.80, worse=2, better=2)
    base = side(examples={"classification": _binary(base_scores)})
    cand = side(examples={"classification": _binary(cand_scores)})
    quiet = _rule(max_mde=0.9)
    result = evaluate_gate(registry=registry, rules=[quiet], candidate=cand, baseline=base)
    assert result.warnings == []


def test_holm_corrects_across_statistical_rules(registry: Any, side: Side) -> None:
    # One rule alone is significant (p = 0.033 < 0.05); among three, Holm needs p < 0.0167.
    base_a, cand_a = _drop(200, 0.5, worse=9, better=2)
    flat = [1, 0] * 100
    base = side(
        examples={
            "classification": _binary(base_a),
            "json_schema": [{"valid": float(v), "parsed": float(v)} for v in flat],
        }
    )
    cand = side(
        examples={
            "classification": _binary(cand_a),
            "json_schema": [{"valid": float(v), "parsed": float(v)} for v in flat],
        }
    )
    rules = [_rule(), _rule("json_schema.valid"), _rule("json_schema.parsed")]
    alone = evaluate_gate(registry=registry, rules=rules[:1], candidate=cand, baseline=base)
    assert alone.rules[0].verdict == "fail"
    assert alone.rules[0].p_value == pytest.approx(67 / 2048)
    family = evaluate_gate(registry=registry, rules=rules, candidate=cand, baseline=base)
    assert [r.verdict for r in family.rules] == ["pass", "pass", "pass"]
    assert "Holm over 3 rules" in family.rules[0].reason
    uncorrected = evaluate_gate(
        registry=registry, rules=rules, candidate=cand, baseline=base, alpha_family="none"
    )
    assert [r.verdict for r in uncorrected.rules] == ["fail", "pass", "pass"]


def test_clusters_in_the_details_give_the_clustered_test(registry: Any, side: Side) -> None:
    rng = np.random.default_rng(7)
    n_clusters, per = 12, 40
    clusters = [f"doc{g}" for g in range(n_clusters) for _ in range(per)]
    shift = np.repeat(rng.normal(-0.01, 0.05, n_clusters), per)  # drops shared by a document
    base_scores = rng.uniform(0.4, 0.9, n_clusters * per)
    cand_scores = base_scores + shift + rng.normal(0, 0.005, n_clusters * per)
    details = [{"cluster": c} for c in clusters]
    base = side(
        examples={"text_metrics": [{"rouge1": float(v)} for v in base_scores]},
        details={"text_metrics": details},
    )
    cand = side(
        examples={"text_metrics": [{"rouge1": float(v)} for v in cand_scores]},
        details={"text_metrics": details},
    )
    rule = _rule("text_metrics.rouge1")
    result = evaluate_gate(registry=registry, rules=[rule], candidate=cand, baseline=base)
    out = result.rules[0]
    assert out.method == f"clustered_paired_t ({n_clusters} clusters)"
    naive = stats.paired_mean_test(base_scores, cand_scores, alpha=0.05)
    assert out.p_value is not None and out.p_value > naive.p_value
    assert out.mde is not None and naive.mde is not None and out.mde > 3 * naive.mde


def test_no_shared_examples_is_an_error(registry: Any, side: Side) -> None:
    base = side(
        examples={"classification": _binary([1, 0, 1])}, ids={"classification": ["a", "b", "c"]}
    )
    cand = side(
        examples={"classification": _binary([1, 1, 1])}, ids={"classification": ["x", "y", "z"]}
    )
    result = evaluate_gate(registry=registry, rules=[_rule()], candidate=cand, baseline=base)
    assert result.verdict == "error"
    assert result.rules[0].verdict == "error"
    assert result.rules[0].reason.startswith("no shared examples: classification on baseline")


def test_partly_shared_examples_pair_on_the_shared_ids(registry: Any, side: Side) -> None:
    base = side(
        examples={"classification": _binary([1] * 30)},
        ids={"classification": [f"q{i}" for i in range(30)]},
    )
    cand = side(
        examples={"classification": _binary([1] * 30)},
        ids={"classification": [f"q{i}" for i in range(10, 40)]},
    )
    result = evaluate_gate(
        registry=registry, rules=[_rule(max_mde=1)], candidate=cand, baseline=base
    )
    assert result.rules[0].n == 20
    assert any("paired on 20 shared examples of 30" in w for w in result.warnings)


def _ppl_examples(nll: list[float], tokens: list[int]) -> list[dict[str, float]]:
    return [
        {"nll": a, "tokens": float(t), "ppl": math.exp(a)} for a, t in zip(nll, tokens, strict=True)
    ]


def test_perplexity_is_bootstrapped_from_per_example_nll_and_tokens(
    registry: Any, side: Side
) -> None:
    rng = np.random.default_rng(3)
    tokens = [int(t) for t in rng.integers(5, 60, 300)]
    nll = [float(v) for v in rng.normal(2.0, 0.3, 300)]
    worse = [v + 0.08 + float(rng.normal(0, 0.02)) for v in nll]
    base = side(examples={"perplexity": _ppl_examples(nll, tokens)})
    cand = side(examples={"perplexity": _ppl_examples(worse, tokens)})
    result = evaluate_gate(
        registry=registry, rules=[_rule("perplexity.ppl")], candidate=cand, baseline=base
    )
    out = result.rules[0]
    assert out.method == "paired_bootstrap (2000 resamples)"
    corpus = math.exp(sum(a * t for a, t in zip(nll, tokens, strict=True)) / sum(tokens))
    assert out.baseline == pytest.approx(corpus)
    assert out.verdict == "fail" and out.delta is not None and out.delta > 0  # ppl went up


def test_corpus_bleu_needs_a_per_example_basis(registry: Any, side: Side) -> None:
    rows = [{"chrf": 50.0 + i % 7} for i in range(40)]
    base = side(
        metrics={"text_metrics": {"bleu": 30.0, "chrf": 52.0}}, examples={"text_metrics": rows}
    )
    cand = side(
        metrics={"text_metrics": {"bleu": 29.0, "chrf": 52.0}}, examples={"text_metrics": rows}
    )
    bare = _rule("text_metrics.bleu")
    result = evaluate_gate(registry=registry, rules=[bare], candidate=cand, baseline=base)
    assert result.rules[0].verdict == "error"
    assert "per_example: text_metrics.chrf" in result.rules[0].reason
    based = StatisticalRule(metric="text_metrics.bleu", per_example="text_metrics.chrf")
    result = evaluate_gate(registry=registry, rules=[based], candidate=cand, baseline=base)
    assert result.rules[0].verdict == "pass"
    assert result.rules[0].method == "paired_bootstrap (2000 resamples)"
