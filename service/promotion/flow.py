"""Promote and roll back from the dashboard: gate the candidate, then move the alias.

Owns what `POST /registry/promote` and `POST /registry/rollback` do, mirroring
`evalctl promote --require-gate` and `evalctl aliases rollback`: the gate reads the
candidate run's own spec (`gate:` section), judges it against the baseline with
`service.gate.rules.evaluate_gate`, and only a pass (or an explicit skip, recorded as
such) moves the alias. A move registers the MLflow model version first (as the CLI does),
then records the alias and its history through `service.crud.set_alias`, with the
dashboard user's token. The dashboard cannot run models: evaluations the rules need but
the registry lacks make the gate an error that says which, and how to run them from the
CLI. The routes (`dashboards.pages.registry`) only parse the form and show the result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from service import crud
from service.errors import EvalctlError, NotFoundError
from service.gate.refs import ResolvedRef, resolve_ref
from service.local import LocalRegistry
from service.models import AliasPublic, Experiment
from service.settings import Settings

# Same rule as the CLI: MLflow reserves 'latest' and version-like names ('v3').
ALIAS_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,99}$")


@dataclass
class PromotionResult:
    """What a promote or roll back did: whether the alias moved, why, and the gate's result."""

    moved: bool
    message: str
    alias: str
    experiment_id: int
    gate: dict[str, Any] | None = None
    checkpoint_id: int | None = None


def alias_problem(name: str) -> str | None:
    """Return why `name` cannot be an alias, or None when it can."""
    if not ALIAS_PATTERN.match(name) or name == "latest" or re.fullmatch(r"[vV]\d+", name):
        return (
            f"alias '{name}': use a letter then letters, digits, '-' or '_' "
            "(not 'latest' or v<number>)"
        )
    return None


def promote(
    *,
    db_url: str,
    write_engine: Engine,
    settings: Settings,
    experiment_id: int,
    alias: str,
    run_id: int | None,
    checkpoint_id: int | None,
    actor: str,
    token_id: int | None,
    skip_gate: bool,
) -> PromotionResult:
    """Gate the candidate (a checkpoint, else a run's best) and, if it passes, move the alias."""

    def refused(message: str, gate: dict[str, Any] | None = None) -> PromotionResult:
        return PromotionResult(False, message, alias, experiment_id, gate)

    problem = alias_problem(alias)
    if problem:
        return refused(problem)
    registry = LocalRegistry(db_url, migrate=False)
    experiment = _experiment(registry, experiment_id)
    if checkpoint_id is None and run_id is None:
        return refused("Choose a run to promote, or give a checkpoint id.")
    ref = f"ckpt:{checkpoint_id}" if checkpoint_id is not None else f"run:{run_id}"
    try:
        target = resolve_ref(registry, ref)
    except NotFoundError as exc:
        return refused(f"Cannot promote {ref}: {exc}.")
    if target.run.experiment_id != experiment_id:
        return refused(
            f"{_describe(target)} belongs to another experiment, not '{experiment.name}'."
        )
    current = _current(registry, experiment_id, alias)
    if current is not None and current.checkpoint_id == target.checkpoint.id:
        return refused(f"@{alias} already points at {_describe(target)}.")
    if skip_gate:
        gate = _skipped(actor, target)
    else:
        gate = run_gate(registry, experiment=experiment.name, alias=alias, candidate=target)
        if gate["verdict"] != "pass":
            word = "failed" if gate["verdict"] == "fail" else "could not judge"
            return refused(f"The gate {word}: @{alias} was not moved.", gate)
    return _move(
        registry,
        write_engine,
        settings,
        experiment,
        alias,
        target,
        action="promote",
        actor=actor,
        token_id=token_id,
        gate=gate,
    )


def rollback(
    *,
    db_url: str,
    write_engine: Engine,
    settings: Settings,
    experiment_id: int,
    alias: str,
    actor: str,
    token_id: int | None,
) -> PromotionResult:
    """Move an alias back to the checkpoint it held before its newest move."""
    registry = LocalRegistry(db_url, migrate=False)
    experiment = _experiment(registry, experiment_id)
    current = _current(registry, experiment_id, alias)
    if current is None:
        message = f"@{alias} is not set for experiment '{experiment.name}'."
        return PromotionResult(False, message, alias, experiment_id)
    history = registry.alias_history(experiment_id=experiment_id, name=alias)
    previous = history[0].previous_checkpoint_id if history else None
    if previous is None or previous == current.checkpoint_id:
        message = f"@{alias} ({experiment.name}) has no earlier checkpoint to roll back to."
        return PromotionResult(False, message, alias, experiment_id)
    target = resolve_ref(registry, f"ckpt:{previous}")
    return _move(
        registry,
        write_engine,
        settings,
        experiment,
        alias,
        target,
        action="rollback",
        actor=actor,
        token_id=token_id,
        gate=None,
    )


def run_gate(
    registry: LocalRegistry, *, experiment: str, alias: str, candidate: ResolvedRef
) -> dict[str, Any]:
    """Judge `candidate` with its run's spec gate; return the GateResult JSON.

    The baseline is the spec's `gate.baseline` when the spec sets one, else the alias
    being moved. A spec without gate rules passes with a note, as in the CLI.
    """
    from service.gate.rules import evaluate_gate
    from service.spec_loader import SpecError, load_spec_text

    run = candidate.run
    try:
        spec = load_spec_text(run.spec_text, run.spec_path or "spec.yaml", check_files=False)
    except SpecError as exc:
        return gate_error(f"the spec of run {run.id} does not load: {exc}")
    section = spec.gate
    if section is None or not section.rules:
        return {"verdict": "pass", "rules": [], "summary": "PASS: spec has no gate rules"}
    rules = list(section.rules)
    sources = [f"gate.rules.{i}" for i in range(len(rules))]
    base_ref = section.baseline if "baseline" in section.model_fields_set else f"@{alias}"
    note = None
    try:
        baseline: ResolvedRef | None = resolve_ref(registry, base_ref, experiment=experiment)
    except NotFoundError as exc:
        if not base_ref.startswith("@"):
            return gate_error(f"baseline {base_ref}: {exc}")
        # Before the first promotion there is no alias: absolute rules still apply.
        baseline, note = None, f"no baseline: {exc}"
    missing = missing_evaluations(registry, spec, rules, candidate, baseline)
    if missing:
        return _missing_result(rules, sources, candidate, baseline, missing, run)
    try:
        result = evaluate_gate(
            registry=registry,
            rules=rules,
            candidate=candidate,
            baseline=baseline,
            sources=sources,
            baseline_note=note,
        )
    except EvalctlError as exc:
        return gate_error(str(exc))
    return result.to_json()


def missing_evaluations(
    registry: LocalRegistry,
    spec: Any,
    rules: list[Any],
    candidate: ResolvedRef,
    baseline: ResolvedRef | None,
) -> dict[str, list[str]]:
    """Return, per evaluator the spec configures, the sides lacking the evaluation a rule reads."""
    from service.gate.rules import needs_baseline
    from service.gate.sides import GateSide

    configured = {name for name, _ in spec.evaluator_configs()}
    sides = [GateSide.load(registry, candidate)]
    if baseline is not None:
        sides.append(GateSide.load(registry, baseline, role="baseline"))
    missing: dict[str, list[str]] = {}
    for rule in rules:
        readers = sides if needs_baseline(rule) else sides[:1]
        for evaluator in rule.evaluators:
            if evaluator not in configured:
                continue  # not runnable from the spec either: the rule fails and says why
            for side in readers:
                where = f"{side.role} {side.label}"
                wanted = missing.setdefault(evaluator, [])
                if not side.has_evaluator(evaluator) and where not in wanted:
                    wanted.append(where)
    return {name: where for name, where in missing.items() if where}


def _skipped(actor: str, target: ResolvedRef) -> dict[str, Any]:
    """Return what the history records when the user skipped the gate."""
    return {
        "verdict": "skipped",
        "summary": f"SKIPPED: gate skipped by {actor} for {target.label}",
        "candidate": target.label,
        "candidate_checkpoint_id": target.checkpoint.id,
        "rules": [],
    }


def gate_error(message: str) -> dict[str, Any]:
    """Return a gate result that could not judge, with `message` as its reason."""
    return {"verdict": "error", "rules": [], "summary": f"ERROR: {message}", "message": message}


def _missing_result(
    rules: list[Any],
    sources: list[str],
    candidate: ResolvedRef,
    baseline: ResolvedRef | None,
    missing: dict[str, list[str]],
    run: Any,
) -> dict[str, Any]:
    from service.gate.rules import GateResult, RuleResult

    listed = "; ".join(f"{name} on {', '.join(where)}" for name, where in missing.items())
    spec_hint = run.spec_path or "SPEC"
    message = (
        f"missing evaluations: {listed}. The dashboard cannot run models: run "
        f"`evalctl gate --spec {spec_hint} --candidate {candidate.label}` from the CLI "
        "(it evaluates what is missing), then promote again."
    )
    results = []
    for rule, source in zip(rules, sources, strict=True):
        lacking = [name for name in rule.evaluators if name in missing]
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
    result = GateResult(
        candidate=candidate.label,
        baseline=baseline.label if baseline is not None else None,
        candidate_checkpoint_id=candidate.checkpoint.id,
        baseline_checkpoint_id=baseline.checkpoint.id if baseline is not None else None,
        rules=results,
    )
    return {**result.to_json(), "message": message, "missing": missing}


def _move(
    registry: LocalRegistry,
    write_engine: Engine,
    settings: Settings,
    experiment: Experiment,
    alias: str,
    target: ResolvedRef,
    *,
    action: str,
    actor: str,
    token_id: int | None,
    gate: dict[str, Any] | None,
) -> PromotionResult:
    """Register the MLflow version, then record the move (and its history), like the CLI."""
    from service.promotion import move_alias

    assert experiment.id is not None
    try:
        moved = move_alias(
            engine=registry.engine,
            write_engine=write_engine,
            settings=settings,
            experiment_id=experiment.id,
            name=alias,
            checkpoint_id=target.checkpoint.id,
            actor=actor,
            action=action,
            gate=gate,
            token_id=token_id,
        )
    except EvalctlError as exc:
        message = f"Registering the model version failed, so @{alias} was not moved: {exc}"
        return PromotionResult(False, message, alias, experiment.id, gate)
    verb = "promoted" if action == "promote" else "rolled back"
    message = f"@{alias} {verb} to {_describe(target)}; MLflow model version {moved.version}."
    return PromotionResult(True, message, alias, experiment.id, gate, target.checkpoint.id)


def _experiment(registry: LocalRegistry, experiment_id: int) -> Experiment:
    with Session(registry.engine) as session:
        return crud.get_experiment(session=session, experiment_id=experiment_id)


def _current(registry: LocalRegistry, experiment_id: int, alias: str) -> AliasPublic | None:
    try:
        return registry.get_alias(experiment_id=experiment_id, name=alias)
    except NotFoundError:
        return None


def _describe(target: ResolvedRef) -> str:
    return (
        f"run {target.run.name} step {target.checkpoint.step} (checkpoint {target.checkpoint.id})"
    )
