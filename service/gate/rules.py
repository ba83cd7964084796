"""The gate's rules engine: judge a candidate checkpoint against a baseline, rule by rule.

Owns `evaluate_gate`, which reads both sides through the registry (`service.gate.sides`),
checks that every metric a rule names exists somewhere (else `UnknownMetricError`, with
"did you mean"), and returns a `GateResult` with one `RuleResult` per rule: values, delta,
interval, p-value, MDE, method and a pass/fail/error verdict with its reason. A metric
missing on a side a rule reads fails that rule. Threshold rules follow MLflow's
`MetricThreshold` + `validate_evaluation_results` exactly (`threshold_failures`; no MLflow
import here). Statistical rules are `service.gate.statistical`'s. It does not resolve
references, run evaluations or format reports.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from service.errors import EvalctlError, did_you_mean
from service.gate import statistical
from service.gate.rule_spec import (
    CHECKPOINT_METRICS,
    AbsoluteRule,
    RelativeRule,
    StatisticalRule,
    ThresholdRule,
    change_limit,
)
from service.gate.sides import GateSide
from service.registry import Registry

Verdict = Literal["pass", "fail", "error", "skip"]
# Bounds are compared with this much slack so '5%' of 10 admits exactly 10.5.
_SLACK = 1e-12


class UnknownMetricError(EvalctlError):
    """A rule names a metric that exists on neither side."""


class RuleResult(BaseModel):
    """The outcome of one rule."""

    source: str = Field(description="Where the rule came from: 'gate.rules.2', '--rule 1'.")
    kind: str
    name: str
    metric: str
    baseline: float | None = None
    candidate: float | None = None
    delta: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    mde: float | None = None
    n: int | None = None
    method: str | None = None
    verdict: Verdict = "pass"
    reason: str = ""
    warnings: list[str] = Field(default_factory=list)


class GateResult(BaseModel):
    """Every rule's outcome, and the verdict: error > fail > pass."""

    candidate: str
    baseline: str | None
    candidate_checkpoint_id: int
    baseline_checkpoint_id: int | None
    rules: list[RuleResult]
    warnings: list[str] = Field(default_factory=list)
    correction: str = "holm"

    @property
    def verdict(self) -> Literal["pass", "fail", "error"]:
        """Return 'error' if any rule errored, else 'fail' if any failed, else 'pass'."""
        verdicts = {r.verdict for r in self.rules}
        if "error" in verdicts:
            return "error"
        return "fail" if "fail" in verdicts else "pass"

    @property
    def passed(self) -> bool:
        """Return whether the candidate passed every rule."""
        return self.verdict == "pass"

    def counts(self) -> dict[str, int]:
        """Return the number of rules per verdict."""
        out = {"pass": 0, "fail": 0, "error": 0, "skip": 0}
        for rule in self.rules:
            out[rule.verdict] += 1
        return out

    def summary(self) -> str:
        """Return the one-line summary, e.g. 'FAIL: 3 rules, 2 passed, 1 failed'."""
        counts = self.counts()
        parts = [f"{counts['pass']} passed"]
        parts += [f"{counts[k]} {w}" for k, w in (("fail", "failed"), ("error", "errors"))]
        if counts["skip"]:
            parts.append(f"{counts['skip']} skipped")
        against = f" vs baseline {self.baseline}" if self.baseline else " (no baseline)"
        head = {"pass": "PASS", "fail": "FAIL", "error": "ERROR"}[self.verdict]
        return f"{head}: candidate {self.candidate}{against}: {len(self.rules)} rules, " + (
            ", ".join(parts)
        )

    def to_json(self) -> dict[str, Any]:
        """Return the result as a JSON-ready dict (with verdict and counts)."""
        data = self.model_dump(mode="json")
        data.update(verdict=self.verdict, counts=self.counts(), summary=self.summary())
        return data


def evaluate_gate(
    *,
    registry: Registry,
    rules: Sequence[Any],
    candidate: Any,
    baseline: Any | None,
    alpha_family: Literal["holm", "none"] = "holm",
    sources: Sequence[str] | None = None,
    baseline_note: str | None = None,
) -> GateResult:
    """Judge `candidate` against `baseline` (ResolvedRefs) on every rule.

    `alpha_family="holm"` applies Holm's correction across the statistical rules that
    share an alpha; `sources` names each rule in reports (default 'rules.N'). Without a
    baseline, rules that compare are skipped with `baseline_note` as their reason.

    Raises:
        UnknownMetricError: a rule names a metric that exists on neither side.
    """
    labels = list(sources) if sources is not None else [f"rules.{i}" for i in range(len(rules))]
    cand = GateSide.load(registry, candidate)
    base = GateSide.load(registry, baseline, role="baseline") if baseline is not None else None
    check_metric_names(rules, labels, cand, base)
    results = [_start(rule, label) for rule, label in zip(rules, labels, strict=True)]
    pending: list[tuple[int, StatisticalRule, Any]] = []
    for i, rule in enumerate(rules):
        out = results[i]
        if base is None and needs_baseline(rule):
            out.verdict, out.reason = "skip", baseline_note or "no baseline to compare with"
        elif isinstance(rule, AbsoluteRule):
            _absolute(rule, out, cand, base)
        elif isinstance(rule, RelativeRule):
            assert base is not None
            _relative(rule, out, cand, base)
        elif isinstance(rule, ThresholdRule):
            _threshold(rule, out, cand, base)
        elif isinstance(rule, StatisticalRule):
            assert base is not None
            paired = _statistical(rule, out, cand, base)
            if paired is not None:
                pending.append((i, rule, paired))
    _decide(pending, results, alpha_family == "holm")
    warnings = [w for r in results for w in r.warnings]
    if base is not None and base.ref.checkpoint.id == cand.ref.checkpoint.id:
        warnings.insert(0, f"candidate and baseline are the same checkpoint ({cand.label})")
    return GateResult(
        candidate=cand.label,
        baseline=base.label if base is not None else None,
        candidate_checkpoint_id=cand.ref.checkpoint.id,
        baseline_checkpoint_id=base.ref.checkpoint.id if base is not None else None,
        rules=results,
        warnings=warnings,
        correction=alpha_family,
    )


def _start(rule: Any, label: str) -> RuleResult:
    return RuleResult(source=label, kind=rule.kind, name=rule.label, metric=rule.metric)


def needs_baseline(rule: Any) -> bool:
    if isinstance(rule, ThresholdRule):
        return rule.min_absolute_change is not None or rule.min_relative_change is not None
    return isinstance(rule, RelativeRule | StatisticalRule)


def check_metric_names(
    rules: Sequence[Any], labels: Sequence[str], cand: GateSide, base: GateSide | None
) -> None:
    """Raise UnknownMetricError for the first metric that exists on neither side."""
    sides = [s for s in (cand, base) if s is not None]
    known: set[str] = set(CHECKPOINT_METRICS)
    for side in sides:
        known |= set(side.metrics())
    for rule, label in zip(rules, labels, strict=True):
        for metric in rule.metrics:
            evaluator = metric.partition(".")[0]
            if metric in known or any(evaluator in s.failed for s in sides):
                continue  # present, or missing because an evaluation failed: the rule says so
            per_example: set[str] = set()
            if isinstance(rule, StatisticalRule):
                # Only this evaluator's examples are read; the others may be large.
                for side in sides:
                    found = side.examples(evaluator)
                    per_example |= (
                        {f"{evaluator}.{k}" for k in found.score_keys()} if found else set()
                    )
                if metric in per_example or metric in statistical.CORPUS_STATISTICS:
                    continue
            options = sorted(known | per_example)
            raise UnknownMetricError(unknown_metric_message(metric, label, options, sides))


def unknown_metric_message(
    metric: str, label: str, options: Sequence[str], sides: Sequence[GateSide]
) -> str:
    """Return "unknown metric 'x' in rules.0. Did you mean 'y'? Metrics here: ..."."""
    shown = ", ".join(options[:15]) + (f" (+{len(options) - 15} more)" if len(options) > 15 else "")
    where = " and ".join(s.label for s in sides)
    return (
        f"unknown metric '{metric}' in {label}.{did_you_mean(metric, options)} "
        f"Metrics on {where}: {shown or 'none'}"
    )


def _absolute(rule: AbsoluteRule, out: RuleResult, cand: GateSide, base: GateSide | None) -> None:
    value = cand.metric(rule.metric)
    out.candidate = value
    out.baseline = base.metric(rule.metric) if base is not None else None
    if out.baseline is not None and value is not None:
        out.delta = value - out.baseline
    if value is None:
        out.verdict, out.reason = "fail", cand.why_missing(rule.metric)
        return
    problems = []
    if rule.min is not None and value < rule.min - _slack(rule.min):
        problems.append(f"{value:.4g} is below min {rule.min:g}")
    if rule.max is not None and value > rule.max + _slack(rule.max):
        problems.append(f"{value:.4g} is above max {rule.max:g}")
    out.verdict = "fail" if problems else "pass"
    out.reason = "; ".join(problems) or f"{value:.4g} within bounds"


def _slack(*values: float) -> float:
    return _SLACK * max(1.0, *(abs(v) for v in values))


def _both(rule: Any, out: RuleResult, cand: GateSide, base: GateSide) -> bool:
    out.candidate, out.baseline = cand.metric(rule.metric), base.metric(rule.metric)
    if out.baseline is None or out.candidate is None:
        side = base if out.baseline is None else cand
        out.verdict, out.reason = "fail", side.why_missing(rule.metric)
        return False
    out.delta = out.candidate - out.baseline
    return True


def _relative(rule: RelativeRule, out: RuleResult, cand: GateSide, base: GateSide) -> None:
    if not _both(rule, out, cand, base):
        return
    assert out.baseline is not None and out.candidate is not None and out.delta is not None
    key, tolerance = rule.bound
    limit = change_limit(tolerance, out.baseline)
    moved = out.delta if key == "max_increase" else -out.delta
    word = key.removeprefix("max_")
    shown = f"{limit:.4g}" + (
        f" ({tolerance} of {out.baseline:.4g})" if isinstance(tolerance, str) else ""
    )
    if moved > limit + _slack(out.baseline, out.candidate):
        out.verdict, out.reason = "fail", f"{word} {moved:.4g} exceeds {shown}"
    else:
        out.verdict, out.reason = "pass", f"{word} {max(moved, 0.0):.4g} within {shown}"


def threshold_failures(
    rule: ThresholdRule, candidate: float | None, baseline: float | None
) -> list[str]:
    """Return why `candidate` fails `rule` the way MLflow's validation decides ([] = pass).

    Mirrors `mlflow.models.evaluation.validation._validate`: a value threshold (>= or <=
    by `greater_is_better`), then, when a change is required, the absolute change against
    baseline +/- min_absolute_change and the relative change (candidate - baseline) /
    |baseline| (reversed when lower is better) against min_relative_change; a zero
    baseline falls back to "better by 1e-10". A missing candidate (or a missing baseline
    when a change is required) fails.
    """
    name = rule.metric
    if candidate is None:
        return [f"metric {name} missing on the candidate"]
    better = operator.ge if rule.greater_is_better else operator.le
    step = operator.add if rule.greater_is_better else operator.sub
    failures = []
    if rule.threshold is not None and not better(candidate, rule.threshold):
        op = ">=" if rule.greater_is_better else "<="
        failures.append(f"{candidate:.6g} is not {op} threshold {rule.threshold:g}")
    wants_change = rule.min_absolute_change is not None or rule.min_relative_change is not None
    if not wants_change:
        return failures
    if baseline is None:
        return [*failures, f"metric {name} missing on the baseline"]
    if rule.min_absolute_change is not None:
        target = step(baseline, rule.min_absolute_change)
        if not better(candidate, target):
            failures.append(
                f"absolute change: {candidate:.6g} vs baseline {baseline:.6g} needs "
                f"{'>=' if rule.greater_is_better else '<='} {target:.6g}"
            )
    if rule.min_relative_change is not None:
        if baseline == 0:
            if not better(candidate, step(baseline, 1e-10)):
                failures.append(f"relative change: baseline is 0 and {candidate:.6g} is not better")
        else:
            gain = candidate - baseline if rule.greater_is_better else baseline - candidate
            relative = gain / abs(baseline)
            if relative < rule.min_relative_change:
                failures.append(
                    f"relative change {relative:.4g} is below {rule.min_relative_change:g}"
                )
    return failures


def _threshold(rule: ThresholdRule, out: RuleResult, cand: GateSide, base: GateSide | None) -> None:
    out.candidate = cand.metric(rule.metric)
    out.baseline = base.metric(rule.metric) if base is not None else None
    if out.candidate is not None and out.baseline is not None:
        out.delta = out.candidate - out.baseline
    if out.candidate is None:
        out.verdict, out.reason = "fail", cand.why_missing(rule.metric)
        return
    failures = threshold_failures(rule, out.candidate, out.baseline)
    if out.baseline is None and base is not None and needs_baseline(rule):
        failures = [base.why_missing(rule.metric)]
    out.verdict = "fail" if failures else "pass"
    out.reason = "; ".join(failures) or "meets the threshold"


def _statistical(
    rule: StatisticalRule, out: RuleResult, cand: GateSide, base: GateSide
) -> Any | None:
    try:
        result, warnings = statistical.run_rule(rule, cand, base)
    except statistical.RuleProblem as exc:
        out.verdict, out.reason = "error", str(exc)
        return None
    except ValueError as exc:  # the statistics refused the data (non-finite values, ...)
        out.verdict, out.reason = "error", f"cannot test {rule.metric}: {exc}"
        return None
    out.baseline, out.candidate, out.delta = result.baseline, result.candidate, result.delta
    out.ci_low, out.ci_high, out.p_value = result.ci_low, result.ci_high, result.p_value
    out.mde, out.n, out.method = result.mde, result.n, statistical.describe_method(result)
    out.warnings.extend(warnings)
    warning = statistical.mde_warning(rule, result)
    if warning:
        out.warnings.append(warning)
    return result


def _decide(
    pending: list[tuple[int, StatisticalRule, Any]], results: list[RuleResult], holm: bool
) -> None:
    alphas = [rule.no_significant_drop.alpha for _, rule, _ in pending]
    p_values = [float(r.p_value) for _, _, r in pending]
    drops = statistical.holm_groups(alphas, p_values, holm)
    family = sum(1 for _ in pending)
    for (i, rule, result), drop in zip(pending, drops, strict=True):
        out = results[i]
        alpha = rule.no_significant_drop.alpha
        level = 1 - 2 * alpha
        interval = f"{level:.0%} interval [{result.ci_low:+.4g}, {result.ci_high:+.4g}]"
        how = (
            f"Holm over {family} rules, alpha {alpha:g}"
            if holm and family > 1
            else f"alpha {alpha:g}"
        )
        p = _p(result.p_value)
        if drop:
            out.verdict = "fail"
            out.reason = f"significant drop: delta {result.delta:+.4g}, {interval}, p={p} ({how})"
        else:
            out.verdict = "pass"
            out.reason = f"no significant drop: delta {result.delta:+.4g}, p={p} ({how})"


def _p(value: float) -> str:
    if math.isnan(value):
        return "nan"
    return f"{value:.2g}" if value >= 1e-4 else f"{value:.1e}"
