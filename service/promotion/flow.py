"""Promote and roll back: check the alias name, gate the candidate, then move the alias.

Owns the steps every promotion shares, whoever asks (`evalctl promote` and `evalctl
aliases rollback`, the dashboard's `POST /registry/promote` and `POST /registry/rollback`,
next the retrain policy): the alias-name rule (`alias_problem`), the alias's current
checkpoint and its rollback target, and the dashboard-shaped flows `promote` and
`rollback` that return a `PromotionResult`. A promotion gates the candidate with its
run's own spec (`service.promotion.gate.gate_for_promotion`) and only a pass (or an
explicit skip, recorded as such) moves the alias; moving it in both registries is
`service.promotion.moves`. The service cannot run models: evaluations the rules need but
the registry lacks make the gate an error that says which, and how to run them from the
CLI.
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
from service.promotion.gate import gate_error, gate_for_promotion
from service.promotion.moves import move
from service.settings import Settings

# MLflow reserves 'latest' and version-like names ('v3') for its own lookups.
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


def alias_problem(alias: str) -> str | None:
    """Return why `alias` (with or without its '@') cannot be an alias, or None when it can."""
    name = alias.removeprefix("@")
    if not ALIAS_PATTERN.match(name) or name == "latest" or re.fullmatch(r"[vV]\d+", name):
        return (
            f"alias '{alias}': use a letter then letters, digits, '-' or '_' "
            "(not 'latest' or v<number>)"
        )
    return None


def current_alias(*, registry: Any, experiment_id: int, name: str) -> AliasPublic | None:
    """Return the alias `name` of an experiment, or None when it is not set."""
    try:
        alias: AliasPublic = registry.get_alias(experiment_id=experiment_id, name=name)
    except NotFoundError:
        return None
    return alias


def rollback_target(*, registry: Any, experiment_id: int, name: str) -> int | None:
    """Return the checkpoint the alias held before its newest move (None: there is none)."""
    history = registry.alias_history(experiment_id=experiment_id, name=name)
    previous: int | None = history[0].previous_checkpoint_id if history else None
    return previous


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
    current = current_alias(registry=registry, experiment_id=experiment_id, name=alias)
    if current is not None and current.checkpoint_id == target.checkpoint.id:
        return refused(f"@{alias} already points at {_describe(target)}.")
    if skip_gate:
        gate = _skipped(actor, target)
    else:
        gate = run_gate(registry, alias=alias, candidate=target)
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
    current = current_alias(registry=registry, experiment_id=experiment_id, name=alias)
    if current is None:
        message = f"@{alias} is not set for experiment '{experiment.name}'."
        return PromotionResult(False, message, alias, experiment_id)
    previous = rollback_target(registry=registry, experiment_id=experiment_id, name=alias)
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


def run_gate(registry: Any, *, alias: str, candidate: ResolvedRef) -> dict[str, Any]:
    """Judge `candidate` with its run's spec gate against `alias`; return the GateResult JSON.

    The baseline is the spec's `gate.baseline` when the spec sets one, else the alias
    being moved. Missing evaluations make the result an error that names them.
    """
    from service.spec_loader import SpecError, load_spec_text

    run = candidate.run
    try:
        spec = load_spec_text(run.spec_text, run.spec_path or "spec.yaml", check_files=False)
    except SpecError as exc:
        return gate_error(f"the spec of run {run.id} does not load: {exc}")
    return gate_for_promotion(registry=registry, spec=spec, candidate=candidate, alias=alias)


def _skipped(actor: str, target: ResolvedRef) -> dict[str, Any]:
    """Return what the history records when the user skipped the gate."""
    return {
        "verdict": "skipped",
        "summary": f"SKIPPED: gate skipped by {actor} for {target.label}",
        "candidate": target.label,
        "candidate_checkpoint_id": target.checkpoint.id,
        "rules": [],
    }


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
    """Move the alias in both registries and say what happened."""
    assert experiment.id is not None
    try:
        moved = move(
            registry=registry,
            experiment_id=experiment.id,
            experiment_name=experiment.name,
            name=alias,
            target=target,
            actor=actor,
            action=action,
            gate=gate,
            token_id=token_id,
            write_engine=write_engine,
            settings=settings,
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


def _describe(target: ResolvedRef) -> str:
    return (
        f"run {target.run.name} step {target.checkpoint.step} (checkpoint {target.checkpoint.id})"
    )
