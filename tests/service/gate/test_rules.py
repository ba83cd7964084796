"""Tests for the gate's rules: spec syntax, threshold semantics (= MLflow's), outcomes.

Threshold rules are checked against `mlflow.models.MetricThreshold` +
`validate_evaluation_results` on a grid of numbers; absolute and relative rules are judged
on checkpoints recorded through a real registry; broken rule sets must be rejected by the
spec loader at the rule's line.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from service.errors import EvalctlError
from service.gate.rule_spec import (
    AbsoluteRule,
    GateSpec,
    RelativeRule,
    StatisticalRule,
    ThresholdRule,
    find_conflict,
    parse_rule,
)
from service.gate.rules import UnknownMetricError, evaluate_gate, threshold_failures
from service.spec_loader import SpecError, load_spec
from tests.service.gate.conftest import Side

VALUES = [-0.5, 0.0, 0.1, 0.69, 0.7, 0.7999999999999999, 0.8, 0.81, 0.85, 1.0]


def _mlflow_passes(kwargs: dict[str, Any], candidate: float, baseline: float | None) -> bool:
    from mlflow.models import MetricThreshold
    from mlflow.models.evaluation import EvaluationResult
    from mlflow.models.evaluation.validation import (
        ModelValidationFailedException,
        validate_evaluation_results,
    )

    thresholds = {"m": MetricThreshold(**kwargs)}
    cand = EvaluationResult(metrics={"m": candidate}, artifacts={})
    base = EvaluationResult(metrics={"m": baseline}, artifacts={}) if baseline is not None else None
    try:
        validate_evaluation_results(thresholds, cand, base)
    except ModelValidationFailedException:
        return False
    return True


def _threshold_grid() -> list[dict[str, Any]]:
    grid = []
    for greater, threshold, absolute, relative in itertools.product(
        (True, False), (None, 0.5, 0.8), (None, 0.01, 0.1), (None, 0.0, 0.05, 0.5)
    ):
        if threshold is None and absolute is None and relative is None:
            continue
        grid.append(
            {
                "threshold": threshold,
                "min_absolute_change": absolute,
                "min_relative_change": relative,
                "greater_is_better": greater,
            }
        )
    return grid


@pytest.mark.parametrize("kwargs", _threshold_grid(), ids=lambda k: json.dumps(k))
def test_threshold_rules_decide_like_mlflow(kwargs: dict[str, Any]) -> None:
    rule = ThresholdRule(metric="ev.m", **kwargs)
    wants_baseline = kwargs["min_absolute_change"] or kwargs["min_relative_change"]
    baselines: list[float | None] = (
        [*VALUES, None]
        if wants_baseline
        or not any(kwargs[k] is not None for k in ("min_absolute_change", "min_relative_change"))
        else list(VALUES)
    )
    checked = 0
    for candidate, baseline in itertools.product(VALUES, baselines):
        expected = _mlflow_passes(kwargs, candidate, baseline)
        ours = threshold_failures(rule, candidate, baseline)
        assert (not ours) == expected, (candidate, baseline, ours)
        checked += 1
    assert checked >= len(VALUES) ** 2


def test_threshold_rule_fails_when_the_candidate_metric_is_missing() -> None:
    rule = ThresholdRule(metric="ev.m", threshold=0.5, greater_is_better=True)
    assert threshold_failures(rule, None, 0.9) == ["metric ev.m missing on the candidate"]


def test_absolute_and_relative_rules_judge_recorded_metrics(registry: Any, side: Side) -> None:
    base = side(metrics={"json_schema": {"valid_rate": 0.95}, "perplexity": {"ppl": 10.0}})
    cand = side(metrics={"json_schema": {"valid_rate": 0.88}, "perplexity": {"ppl": 10.5}})
    rules = [
        AbsoluteRule(metric="json_schema.valid_rate", min=0.9),
        AbsoluteRule(metric="json_schema.valid_rate", max=0.99),
        RelativeRule(metric="perplexity.ppl", max_increase="5%"),  # exactly at the limit
        RelativeRule(metric="perplexity.ppl", max_increase=0.4),
        RelativeRule(metric="json_schema.valid_rate", max_decrease=0.1),
        RelativeRule(metric="json_schema.valid_rate", max_decrease="5%"),
    ]
    result = evaluate_gate(registry=registry, rules=rules, candidate=cand, baseline=base)
    verdicts = [r.verdict for r in result.rules]
    assert verdicts == ["fail", "pass", "pass", "fail", "pass", "fail"]
    assert result.verdict == "fail" and not result.passed
    assert "0.88 is below min 0.9" in result.rules[0].reason
    assert result.rules[2].baseline == 10.0 and result.rules[2].candidate == 10.5
    assert result.rules[3].delta == pytest.approx(0.5)
    assert "exceeds 0.4" in result.rules[3].reason
    assert "decrease 0.07" in result.rules[5].reason and "5% of 0.95" in result.rules[5].reason
    assert result.summary().startswith("FAIL: candidate")


def test_threshold_rule_through_the_gate_matches_mlflow(registry: Any, side: Side) -> None:
    base = side(metrics={"ev": {"acc": 0.80}})
    cand = side(metrics={"ev": {"acc": 0.83}})
    passing = ThresholdRule(
        metric="ev.acc", threshold=0.8, min_absolute_change=0.02, greater_is_better=True
    )
    failing = ThresholdRule(metric="ev.acc", min_relative_change=0.05, greater_is_better=True)
    result = evaluate_gate(registry=registry, rules=[passing], candidate=cand, baseline=base)
    assert result.passed
    kwargs = {"min_relative_change": 0.05, "greater_is_better": True}
    assert not _mlflow_passes(kwargs, 0.83, 0.80)
    result = evaluate_gate(registry=registry, rules=[failing], candidate=cand, baseline=base)
    assert result.rules[0].verdict == "fail"
    assert "relative change 0.0375 is below 0.05" in result.rules[0].reason


def test_a_metric_missing_on_the_baseline_fails_its_rule_with_the_reason(
    registry: Any, side: Side
) -> None:
    base = side(metrics={"json_schema": {"valid_rate": 0.9}})
    cand = side(metrics={"json_schema": {"valid_rate": 0.9}, "perplexity": {"ppl": 9.0}})
    rules = [
        RelativeRule(metric="perplexity.ppl", max_increase="5%"),
        AbsoluteRule(metric="perplexity.ppl", max=12),  # reads the candidate only: passes
    ]
    result = evaluate_gate(registry=registry, rules=rules, candidate=cand, baseline=base)
    first = result.rules[0]
    assert first.verdict == "fail"
    assert first.reason == (
        f"metric perplexity.ppl missing on baseline {base.label} (no perplexity evaluation)"
    )
    assert result.rules[1].verdict == "pass"


def test_a_failed_evaluation_is_named_in_the_reason(registry: Any, side: Side) -> None:
    base = side(metrics={"perplexity": {"ppl": 9.0}})
    cand = side(failed={"perplexity": "CUDA out of memory"})
    rule = RelativeRule(metric="perplexity.ppl", max_increase="5%")
    result = evaluate_gate(registry=registry, rules=[rule], candidate=cand, baseline=base)
    assert result.rules[0].verdict == "fail"
    assert "missing on candidate" in result.rules[0].reason
    assert "evaluation perplexity failed: CUDA out of memory" in result.rules[0].reason


def test_an_unknown_metric_is_an_error_with_did_you_mean(registry: Any, side: Side) -> None:
    base = side(metrics={"perplexity": {"ppl": 9.0}})
    cand = side(metrics={"perplexity": {"ppl": 9.1}})
    rule = AbsoluteRule(metric="perplexity.pplx", max=10)
    with pytest.raises(UnknownMetricError, match=r"Did you mean 'perplexity\.ppl'"):
        evaluate_gate(registry=registry, rules=[rule], candidate=cand, baseline=base)


def test_comparing_rules_are_skipped_without_a_baseline(registry: Any, side: Side) -> None:
    cand = side(metrics={"ev": {"acc": 0.9}})
    rules = [
        AbsoluteRule(metric="ev.acc", min=0.8),
        RelativeRule(metric="ev.acc", max_decrease=0.01),
    ]
    result = evaluate_gate(
        registry=registry, rules=rules, candidate=cand, baseline=None, baseline_note="no alias"
    )
    assert [r.verdict for r in result.rules] == ["pass", "skip"]
    assert result.rules[1].reason == "no alias"
    assert result.passed


def test_eval_loss_is_a_checkpoint_metric(registry: Any, side: Side) -> None:
    base, cand = side(eval_loss=1.0), side(eval_loss=1.2)
    rule = RelativeRule(metric="eval_loss", max_increase="10%")
    result = evaluate_gate(registry=registry, rules=[rule], candidate=cand, baseline=base)
    assert result.rules[0].verdict == "fail"


GATE_SPEC = """\
name: gated
base_model: model
data: {train: train.jsonl, format: completion}
gate:
  baseline: "@production"
  rules:
    - {metric: json_schema.valid_rate, min: 0.9}
    - {metric: perplexity.ppl, max_increase: "5%"}
    - {metric: json_schema.valid_rate, max: 0.8}
"""


def _spec(tmp_path: Path, text: str) -> Path:
    (tmp_path / "model").mkdir(exist_ok=True)
    (tmp_path / "model" / "config.json").write_text("{}")
    (tmp_path / "train.jsonl").write_text('{"text": "x"}\n')
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    return str(caught.value).splitlines()


def test_contradictory_rules_are_rejected_at_the_rules_line(tmp_path: Path) -> None:
    path = _spec(tmp_path, GATE_SPEC)
    assert _problems(path) == [
        f"{path}:9:7: gate.rules.2: contradicts rules.0: json_schema.valid_rate min 0.9 is "
        "above max 0.8, no value can pass"
    ]


@pytest.mark.parametrize(
    ("rule", "where", "message"),
    [
        ("{metric: a.b, min: 0.9, max: 0.1}", "9:7: gate.rules.2.max", "below min"),
        (
            "{metric: a.b, max_increase: 5%, max_decrease: 1}",
            "9:7: gate.rules.2.max_decrease",
            "not both",
        ),
        ("{metric: a.b, max_increase: -1}", "9:7: gate.rules.2.max_increase", ">= 0"),
        ("{metric: perplexity.ppl, max_increase: 10%}", "9:7: gate.rules.2", "again"),
        ("{metric: json_schema.valid_rate, min: 0.9}", "9:7: gate.rules.2", "repeats rules.0"),
        ("{metric: a.b, min: 1, no_significant_drop: {}}", "9:7: gate.rules.2", "mixes"),
        ("{metric: a.b, max_increse: 5%}", "9:7: gate.rules.2", "Did you mean 'max_increase'"),
        ("{metric: a.b, threshold: 0.8}", "9:7: gate.rules.2.greater_is_better", "missing"),
        ("{metric: ppl, max: 3}", "9:7: gate.rules.2.metric", "evaluator.metric"),
        ("{metric: a.b, no_significant_drop: {alpah: 0.1}}", "9:7: gate.rules.2.no_sig", "'alpha'"),
    ],
)
def test_bad_rules_point_at_their_line(tmp_path: Path, rule: str, where: str, message: str) -> None:
    text = GATE_SPEC.replace("{metric: json_schema.valid_rate, max: 0.8}", rule)
    problems = _problems(_spec(tmp_path, text))
    assert len(problems) == 1, problems
    line_col, field = where.split(": ")
    head = problems[0].removeprefix(f"{tmp_path / 'spec.yaml'}:")
    assert head.split(":")[0] == line_col.split(":")[0]  # the rule's line
    assert head.split(": ")[1].startswith(field), head
    assert message in head


def test_a_valid_gate_section_loads_with_defaults(tmp_path: Path) -> None:
    text = GATE_SPEC.replace(
        "{metric: json_schema.valid_rate, max: 0.8}",
        "{metric: classification.correct, no_significant_drop: {alpha: 0.01}}",
    )
    spec = load_spec(_spec(tmp_path, text))
    assert spec.gate is not None and spec.gate.baseline == "@production"
    kinds = [r.kind for r in spec.gate.rules]
    assert kinds == ["absolute", "relative", "statistical"]
    stat = spec.gate.rules[2]
    assert isinstance(stat, StatisticalRule) and stat.no_significant_drop.alpha == 0.01
    assert stat.no_significant_drop.margin == 0.0 and stat.higher_better


def test_cli_rules_parse_from_yaml_or_json_and_conflicts_are_found() -> None:
    first = parse_rule('{"metric": "perplexity.ppl", "max_increase": "5%"}', label="--rule 1")
    second = parse_rule("{metric: perplexity.ppl, max_increase: 2}", label="--rule 2")
    assert isinstance(first, RelativeRule) and first.bound == ("max_increase", "5%")
    conflict = find_conflict([first, second], ["gate.rules.0", "--rule 2"])
    assert conflict is not None and conflict.startswith("--rule 2 gives perplexity.ppl")
    with pytest.raises(EvalctlError, match=r"--rule 3: min: Input should be a valid number"):
        parse_rule("{metric: a.b, min: lots}", label="--rule 3")
    with pytest.raises(EvalctlError, match="--rule 4: not valid YAML"):
        parse_rule("{metric: [", label="--rule 4")


def test_gate_spec_statistical_direction_follows_the_metric_name() -> None:
    gate = GateSpec.model_validate(
        {"rules": [{"metric": "perplexity.ppl", "no_significant_drop": True}]}
    )
    rule = gate.rules[0]
    assert isinstance(rule, StatisticalRule) and not rule.higher_better
