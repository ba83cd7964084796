"""Gate planning for a promotion: the rules, both references, what is missing, the verdict.

Owns `plan_gate` (gather the spec's `gate:` rules plus extra ones, resolve the candidate
and the baseline), `missing_evaluations` (which evaluations the rules read that a side
lacks), `run_missing` (hand them to the caller's evaluate function: the service cannot
run models, the CLI hands them to `runners.evaluate`), `judge` (`service.gate.rules`) and
`gate_for_promotion`, the gate a promotion runs. The rule models, statistics and
reports stay in `service.gate`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from service.errors import EvalctlError, NotFoundError
from service.gate.refs import ResolvedRef, resolve_ref

#: Runs evaluators (names) on one checkpoint (id) and records the results.
Evaluate = Callable[[int, list[str]], None]


@dataclass
class GatePlan:
    """What one gate run compares: rules (with their sources) and the two references."""

    spec: Any
    rules: list[Any]
    sources: list[str]
    candidate: ResolvedRef
    baseline: ResolvedRef | None
    baseline_note: str | None = None
    evaluated: list[str] = field(default_factory=list)


@dataclass
class MissingEvaluation:
    """An evaluation a rule reads that one side lacks and the spec can run."""

    evaluator: str
    checkpoint_id: int
    side: str  # e.g. 'candidate run:2'
    source: str  # the first rule that reads it, e.g. 'gate.rules.1'


def baseline_ref(spec: Any, *, alias: str | None = None) -> str:
    """Return the baseline a spec's gate compares with when no --baseline is given.

    With `alias` (the alias being moved), that alias unless the spec names a baseline.
    """
    section = spec.gate
    if alias is not None and (section is None or "baseline" not in section.model_fields_set):
        return f"@{alias}"
    return section.baseline if section else "@production"


def plan_gate(
    *,
    registry: Any,
    spec: Any,
    candidate: str | ResolvedRef,
    baseline: str | None = None,
    alias: str | None = None,
    extra_rules: list[str] | None = None,
    spec_label: str = "the spec",
) -> GatePlan:
    """Gather and check the rules and resolve both references.

    Raises:
        EvalctlError: no rules, conflicting or unparsable extra rules.
        NotFoundError: a reference that does not resolve (a default @alias that is not set
            yet is not an error: comparing rules are skipped, with a note).
    """
    from service.gate.rule_spec import find_conflict, parse_rule

    section = spec.gate
    rules = list(section.rules) if section else []
    sources = [f"gate.rules.{i}" for i in range(len(rules))]
    for i, text in enumerate(extra_rules or [], start=1):
        rules.append(parse_rule(text, label=f"--rule {i}"))
        sources.append(f"--rule {i}")
    if not rules:
        raise EvalctlError(
            f"no gate rules: add a gate.rules section to {spec_label} or pass --rule"
        )
    conflict = find_conflict(rules, sources)
    if conflict:
        raise EvalctlError(conflict)
    experiment = spec.experiment_name
    if isinstance(candidate, str):
        candidate = resolve_ref(registry, candidate, experiment=experiment)
    base_ref = baseline or baseline_ref(spec, alias=alias)
    note = None
    try:
        base: ResolvedRef | None = resolve_ref(registry, base_ref, experiment=experiment)
    except NotFoundError as exc:
        if baseline is not None or not base_ref.startswith("@"):
            raise
        # The default alias does not exist before the first promotion: absolute rules
        # still apply, comparing ones are skipped.
        base, note = None, f"no baseline: {exc}"
    return GatePlan(spec, rules, sources, candidate, base, note)


def missing_evaluations(
    *, registry: Any, plan: GatePlan, check_names: bool = False
) -> list[MissingEvaluation]:
    """Return the evaluations the rules read that a side lacks and the spec configures.

    With `check_names`, a rule naming an evaluator that neither the spec nor any side has
    raises an EvalctlError with the metrics there are (else the judging says so per rule).
    """
    from service.gate.rules import needs_baseline, unknown_metric_message
    from service.gate.sides import GateSide

    configured = dict(plan.spec.evaluator_configs())
    sides = [GateSide.load(registry, plan.candidate)]
    if plan.baseline is not None:
        sides.append(GateSide.load(registry, plan.baseline, role="baseline"))
    known = set(configured)
    for side in sides:
        known |= set(side.evaluations) | set(side.failed)
    missing: list[MissingEvaluation] = []
    for rule, source in zip(plan.rules, plan.sources, strict=True):
        for evaluator in rule.evaluators:
            if check_names and evaluator not in known:
                options = sorted({m for s in sides for m in s.metrics()})
                options += [f"{name}.*" for name in configured]
                metric = next(m for m in rule.metrics if m.startswith(f"{evaluator}."))
                raise EvalctlError(unknown_metric_message(metric, source, options, sides))
            readers = sides if needs_baseline(rule) else sides[:1]
            for side in readers:
                if side.has_evaluator(evaluator) or evaluator not in configured:
                    continue
                where = f"{side.role} {side.label}"
                if any(m.evaluator == evaluator and m.side == where for m in missing):
                    continue
                checkpoint_id = side.ref.checkpoint.id
                missing.append(MissingEvaluation(evaluator, checkpoint_id, where, source))
    return missing


def run_missing(*, plan: GatePlan, missing: list[MissingEvaluation], evaluate: Evaluate) -> None:
    """Run the missing evaluations, one `evaluate` call per checkpoint, in the rules' order."""
    todo: dict[int, list[str]] = {}
    for m in missing:
        names = todo.setdefault(m.checkpoint_id, [])
        if m.evaluator not in names:
            names.append(m.evaluator)
    for checkpoint_id, names in todo.items():
        evaluate(checkpoint_id, names)
        plan.evaluated += [f"{name}@ckpt:{checkpoint_id}" for name in names]


def judge(*, registry: Any, plan: GatePlan) -> Any:
    """Return the GateResult of `plan` (evaluations are already in the registry)."""
    from service.gate.rules import evaluate_gate

    return evaluate_gate(
        registry=registry,
        rules=plan.rules,
        candidate=plan.candidate,
        baseline=plan.baseline,
        sources=plan.sources,
        baseline_note=plan.baseline_note,
    )


def gate_for_promotion(
    *,
    registry: Any,
    spec: Any,
    candidate: ResolvedRef,
    alias: str | None = None,
    evaluate: Evaluate | None = None,
) -> dict[str, Any]:
    """Gate `candidate` with the spec's rules before a promotion; return the GateResult JSON.

    The baseline is the spec's `gate.baseline`, or with `alias` the alias being moved
    unless the spec names one. A spec without gate rules passes with a note. Missing
    evaluations are run through `evaluate`; without it (the dashboard cannot run models)
    they make the result an error that names them. A gate that cannot judge returns
    verdict 'error' with a `message`.
    """
    section = spec.gate
    if section is None or not section.rules:
        return {"verdict": "pass", "rules": [], "summary": "PASS: spec has no gate rules"}
    try:
        plan = plan_gate(registry=registry, spec=spec, candidate=candidate, alias=alias)
    except NotFoundError as exc:
        return gate_error(f"baseline {baseline_ref(spec, alias=alias)}: {exc}")
    missing = missing_evaluations(registry=registry, plan=plan, check_names=evaluate is not None)
    if missing and evaluate is None:
        return missing_result(plan, missing)
    if missing and evaluate is not None:
        run_missing(plan=plan, missing=missing, evaluate=evaluate)
    try:
        result = judge(registry=registry, plan=plan)
    except EvalctlError as exc:
        return gate_error(str(exc))
    return dict(result.to_json())


def gate_error(message: str) -> dict[str, Any]:
    """Return a gate result that could not judge, with `message` as its reason."""
    return {"verdict": "error", "rules": [], "summary": f"ERROR: {message}", "message": message}


def missing_result(plan: GatePlan, missing: list[MissingEvaluation]) -> dict[str, Any]:
    """Return the gate result of a plan whose missing evaluations cannot be run here."""
    from service.gate.rules import GateResult, RuleResult

    by_name: dict[str, list[str]] = {}
    for m in missing:
        by_name.setdefault(m.evaluator, []).append(m.side)
    listed = "; ".join(f"{name} on {', '.join(where)}" for name, where in by_name.items())
    spec_hint = plan.candidate.run.spec_path or "SPEC"
    message = (
        f"missing evaluations: {listed}. The dashboard cannot run models: run "
        f"`evalctl gate --spec {spec_hint} --candidate {plan.candidate.label}` from the CLI "
        "(it evaluates what is missing), then promote again."
    )
    results = []
    for rule, source in zip(plan.rules, plan.sources, strict=True):
        lacking = [name for name in rule.evaluators if name in by_name]
        verdict = "error" if lacking else "skip"
        reason = f"missing evaluation {', '.join(lacking)}" if lacking else "not judged (see above)"
        results.append(
            RuleResult(
                source=source,
                kind=rule.kind,
                name=rule.label,
                metric=rule.metric,
                verdict=verdict,
                reason=reason,
            )
        )
    baseline = plan.baseline
    result = GateResult(
        candidate=plan.candidate.label,
        baseline=baseline.label if baseline is not None else None,
        candidate_checkpoint_id=plan.candidate.checkpoint.id,
        baseline_checkpoint_id=baseline.checkpoint.id if baseline is not None else None,
        rules=results,
    )
    return {**result.to_json(), "message": message, "missing": by_name}
