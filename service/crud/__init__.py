"""Data access for the registry: every SQL statement evalctl runs against its tables.

Functions take keyword-only arguments and a SQLModel `Session`, return table rows, and
commit their own writes (one call, one transaction). Unknown ids raise `NotFoundError`
with a one-line message. Callers that must not hand out rows (the `Registry`
implementations, the API routes) convert them to `*Public` models. This module does not
open sessions or engines (`service.db`, `service.local`).

Writes that a remote client may retry take an `idempotency_key` (the request's
`Idempotency-Key`, None locally): it is stored on the row the write creates (unique), so
a retry finds that row and returns it instead of writing again, even when the two race
(`insert_once`, which the queue's enqueue uses too); the same key with a different
request raises `IdempotencyKeyReused` (422).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from service.errors import EvalctlError, NotFoundError, did_you_mean
from service.models import (
    ALIAS_ACTIONS,
    Alias,
    AliasEvent,
    AliasEventCreate,
    Checkpoint,
    CheckpointCreate,
    EvalExample,
    EvalExampleCreate,
    Evaluation,
    EvaluationCreate,
    Experiment,
    Run,
    RunCreate,
    RunStatus,
    RunUpdate,
    utcnow,
)

T = TypeVar("T")


class IdempotencyKeyReused(ValueError):
    """An `Idempotency-Key` came back with a different request than the one it first wrote."""


def replayed(*, session: Session, model: Any, key: str | None, expect: dict[str, Any]) -> Any:
    """Return the row an earlier request with `key` wrote (None if none, or no key).

    `expect` holds the fields the new request would write; a row that differs in any
    raises `IdempotencyKeyReused` naming them, so a reused key never returns another
    request's row as if it were this one's.
    """
    if not key:
        return None
    row = session.exec(select(model).where(model.idempotency_key == key)).first()
    if row is None:
        return None
    differs = [name for name, value in expect.items() if getattr(row, name) != value]
    if differs:
        raise IdempotencyKeyReused(
            f"Idempotency-Key '{key}' was already used for {_noun(model)} {row.id} with a "
            f"different {', '.join(differs)}; send a new key for a new request"
        )
    return row


def insert_once(
    *,
    session: Session,
    model: type[T],
    key: str | None,
    expect: dict[str, Any],
    write: Callable[[], T],
) -> T:
    """Run `write` (it adds the row that stores `key`) and commit it, once per `key`.

    A row an earlier request with `key` wrote is returned without writing. A concurrent
    retry that commits first breaks the key's unique index at this commit: that is rolled
    back and the retry's row returned. Another request under the key: `IdempotencyKeyReused`.
    """
    existing = replayed(session=session, model=model, key=key, expect=expect)
    if existing is not None:
        session.commit()  # ends a write transaction the caller began
        return existing
    try:
        row = write()
        session.commit()
    except IntegrityError:
        session.rollback()
        existing = replayed(session=session, model=model, key=key, expect=expect)
        if existing is None:
            raise
        return existing
    except BaseException:
        session.rollback()
        raise
    session.refresh(row)
    return row


# --- experiments -----------------------------------------------------------------------


def get_or_create_experiment(*, session: Session, name: str) -> Experiment:
    """Return the experiment called `name`, creating it if needed (safe under a race)."""
    query = select(Experiment).where(Experiment.name == name)
    existing = session.exec(query).first()
    if existing is not None:
        return existing
    return _insert_or_reselect(session=session, row=Experiment(name=name), query=query)


def list_experiments(*, session: Session) -> list[Experiment]:
    """List all experiments by name."""
    return list(session.exec(select(Experiment).order_by(col(Experiment.name))).all())


def get_experiment_by_name(*, session: Session, name: str) -> Experiment:
    """Return the experiment called `name` (NotFoundError, with a suggestion, if none)."""
    row = session.exec(select(Experiment).where(Experiment.name == name)).first()
    if row is None:
        names = session.exec(select(Experiment.name)).all()
        raise NotFoundError(f"experiment '{name}' not found.{did_you_mean(name, names)}")
    return row


def get_experiment(*, session: Session, experiment_id: int) -> Experiment:
    """Return an experiment by id."""
    return _get(session, Experiment, experiment_id)


# --- runs ------------------------------------------------------------------------------


def create_run(*, session: Session, run_in: RunCreate, idempotency_key: str | None = None) -> Run:
    """Create a run in an existing experiment (once per `idempotency_key`)."""
    _get(session, Experiment, run_in.experiment_id)
    expect = {"experiment_id": run_in.experiment_id, "name": run_in.name}
    expect["spec_hash"] = run_in.spec_hash

    def write() -> Run:
        run = Run.model_validate(run_in, update={"idempotency_key": idempotency_key})
        session.add(run)
        return run

    return insert_once(session=session, model=Run, key=idempotency_key, expect=expect, write=write)


def get_run(*, session: Session, run_id: int) -> Run:
    """Return a run by id."""
    return _get(session, Run, run_id)


def find_run(*, session: Session, ref: str | int) -> Run:
    """Return a run by id, else the newest run named `ref`."""
    ref = str(ref).strip()
    if ref.isdigit():
        run = session.get(Run, int(ref))
        if run is not None:
            return run
    newest = (
        select(Run).where(Run.name == ref).order_by(col(Run.created_at).desc(), col(Run.id).desc())
    )
    run = session.exec(newest).first()
    if run is None:
        raise NotFoundError(f"run {ref} not found" if ref.isdigit() else f"run '{ref}' not found")
    return run


def update_run(*, session: Session, run_id: int, run_update: RunUpdate) -> Run:
    """Apply the fields set in `run_update` to a run."""
    run = _get(session, Run, run_id)
    data = run_update.model_dump(exclude_unset=True)
    best = data.get("best_checkpoint_id")
    if best is not None:
        checkpoint = _get(session, Checkpoint, best)
        if checkpoint.run_id != run_id:
            owner = checkpoint.run_id
            raise EvalctlError(f"checkpoint {best} belongs to run {owner}, not run {run_id}")
    run.sqlmodel_update(data)
    session.add(run)
    session.commit()
    session.refresh(run)
    return run


def list_runs(
    *,
    session: Session,
    experiment: str | None = None,
    status: RunStatus | str | None = None,
    limit: int | None = 100,
    offset: int = 0,
) -> tuple[list[Run], int]:
    """Return one page of runs, newest first, and how many match in all."""
    query = select(Run)
    if experiment is not None:
        experiment_id = get_experiment_by_name(session=session, name=experiment).id
        query = query.where(Run.experiment_id == experiment_id)
    if status is not None:
        query = query.where(Run.status == RunStatus(status))
    order = (col(Run.created_at).desc(), col(Run.id).desc())
    rows = session.exec(query.order_by(*order).offset(offset).limit(limit)).all()
    return list(rows), _count(session, query)


# --- checkpoints -----------------------------------------------------------------------


def record_checkpoint(*, session: Session, checkpoint_in: CheckpointCreate) -> Checkpoint:
    """Record a checkpoint; the same (run, step, sha256) returns the existing row."""
    _get(session, Run, checkpoint_in.run_id)
    query = select(Checkpoint).where(
        Checkpoint.run_id == checkpoint_in.run_id,
        Checkpoint.step == checkpoint_in.step,
        Checkpoint.sha256 == checkpoint_in.sha256,
    )
    existing = session.exec(query).first()
    if existing is not None:
        return existing
    row = Checkpoint.model_validate(checkpoint_in)
    return _insert_or_reselect(session=session, row=row, query=query)


def get_checkpoint(*, session: Session, checkpoint_id: int) -> Checkpoint:
    """Return a checkpoint by id."""
    return _get(session, Checkpoint, checkpoint_id)


def list_checkpoints(*, session: Session, run_id: int) -> list[Checkpoint]:
    """List a run's checkpoints by step (then by when they were recorded)."""
    _get(session, Run, run_id)
    query = (
        select(Checkpoint)
        .where(Checkpoint.run_id == run_id)
        .order_by(col(Checkpoint.step), col(Checkpoint.id))
    )
    return list(session.exec(query).all())


# --- evaluations -----------------------------------------------------------------------


def record_evaluation(
    *,
    session: Session,
    evaluation_in: EvaluationCreate,
    examples: Sequence[EvalExampleCreate] = (),
    idempotency_key: str | None = None,
) -> Evaluation:
    """Insert an evaluation and all its examples in one transaction (once per key).

    `n_examples` defaults to `len(examples)` when left at 0. Scores and metrics must be
    finite: JSON (and so Postgres) cannot store NaN or infinity.
    """
    _get(session, Checkpoint, evaluation_in.checkpoint_id)
    _check_finite("metrics", evaluation_in.metrics)
    for example in examples:
        _check_finite(f"example '{example.example_id}' scores", example.scores)
    evaluation = Evaluation.model_validate(
        evaluation_in, update={"idempotency_key": idempotency_key}
    )
    if examples and not evaluation.n_examples:
        evaluation.n_examples = len(examples)
    expect = {
        name: getattr(evaluation, name)
        for name in ("checkpoint_id", "evaluator", "config_hash", "status", "n_examples")
    }

    def write() -> Evaluation:
        session.add(evaluation)
        session.flush()
        if examples:
            rows = [
                {
                    "evaluation_id": evaluation.id,
                    "position": ex.position,
                    "example_id": ex.example_id,
                    "scores": ex.scores,
                    "details": ex.details,
                }
                for ex in examples
            ]
            # One Core executemany on the table: the ORM bulk path costs ~3x more per row.
            session.execute(EvalExample.__table__.insert(), rows)  # type: ignore[attr-defined]
        return evaluation

    return insert_once(
        session=session, model=Evaluation, key=idempotency_key, expect=expect, write=write
    )


def get_evaluation(*, session: Session, evaluation_id: int) -> Evaluation:
    """Return an evaluation by id."""
    return _get(session, Evaluation, evaluation_id)


def list_evaluations(
    *, session: Session, run_id: int | None = None, checkpoint_id: int | None = None
) -> list[Evaluation]:
    """List evaluations of a run's checkpoints and/or one checkpoint, oldest first."""
    query = select(Evaluation)
    if run_id is not None:
        _get(session, Run, run_id)
        query = query.join(Checkpoint, col(Checkpoint.id) == col(Evaluation.checkpoint_id))
        query = query.where(Checkpoint.run_id == run_id)
    if checkpoint_id is not None:
        _get(session, Checkpoint, checkpoint_id)
        query = query.where(Evaluation.checkpoint_id == checkpoint_id)
    query = query.order_by(col(Evaluation.created_at), col(Evaluation.id))
    return list(session.exec(query).all())


def list_examples(
    *, session: Session, evaluation_id: int, limit: int | None = None, offset: int = 0
) -> tuple[list[EvalExample], int]:
    """Return an evaluation's examples by position (one page) and how many it has."""
    _get(session, Evaluation, evaluation_id)
    query = select(EvalExample).where(EvalExample.evaluation_id == evaluation_id)
    ordered = query.order_by(col(EvalExample.position), col(EvalExample.id))
    rows = session.exec(ordered.offset(offset).limit(limit)).all()
    return list(rows), _count(session, query)


def example_scores(*, session: Session, evaluation_id: int) -> list[tuple[str, Any, Any]]:
    """Return (example_id, scores, cluster) per example by position, without ORM objects.

    The gate reads tens of thousands of rows per checkpoint: building a row object and a
    validated model for each, or decoding every example's details (outputs, prompts),
    costs more than the statistics, so this selects the scores and the cluster id only.
    """
    _get(session, Evaluation, evaluation_id)
    cluster = col(EvalExample.details)["cluster"].as_string()
    query = (
        select(col(EvalExample.example_id), col(EvalExample.scores), cluster)
        .where(EvalExample.evaluation_id == evaluation_id)
        .order_by(col(EvalExample.position), col(EvalExample.id))
    )
    return [(row[0], row[1], row[2]) for row in session.execute(query)]


# --- aliases -------------------------------------------------------------------------


def alias_event_for_key(*, session: Session, key: str | None) -> AliasEvent | None:
    """Return the alias move an earlier request with this `Idempotency-Key` recorded."""
    if not key:
        return None
    return session.exec(select(AliasEvent).where(AliasEvent.idempotency_key == key)).first()


def set_alias(
    *,
    session: Session,
    experiment_id: int,
    name: str,
    checkpoint_id: int,
    actor: str,
    action: str = "promote",
    gate: dict[str, Any] | None = None,
    version: int | None = None,
    token_id: int | None = None,
    idempotency_key: str | None = None,
) -> Alias:
    """Point alias `name` at a checkpoint and record the move, in one transaction.

    A retry with the `idempotency_key` of a recorded move returns the alias without
    moving it again (one event in its history).
    """
    if action not in ALIAS_ACTIONS:
        raise ValueError(f"alias action must be one of {', '.join(ALIAS_ACTIONS)}, not {action!r}")
    experiment = _get(session, Experiment, experiment_id)
    checkpoint = _get(session, Checkpoint, checkpoint_id)
    owner = _get(session, Run, checkpoint.run_id)
    if owner.experiment_id != experiment_id:
        other = _get(session, Experiment, owner.experiment_id).name
        raise EvalctlError(
            f"checkpoint {checkpoint_id} belongs to experiment '{other}', not '{experiment.name}'"
        )
    event_in = AliasEventCreate(
        experiment_id=experiment_id,
        name=name,
        checkpoint_id=checkpoint_id,
        version=version,
        action=action,
        actor=actor,
        token_id=token_id,
        gate=gate,
    )
    expect = {"experiment_id": experiment_id, "name": name, "checkpoint_id": checkpoint_id}
    expect["action"] = action

    def move() -> Alias:
        if replayed(session=session, model=AliasEvent, key=idempotency_key, expect=expect):
            return get_alias(session=session, experiment_id=experiment_id, name=name)
        return _move_alias(session=session, event_in=event_in, key=idempotency_key)

    try:
        return move()
    except IntegrityError:
        # A concurrent first promotion created the alias (move the row it inserted), or
        # a concurrent retry with this key recorded the move (answer with the alias).
        return move()


def _move_alias(*, session: Session, event_in: AliasEventCreate, key: str | None) -> Alias:
    query = select(Alias).where(
        Alias.experiment_id == event_in.experiment_id, Alias.name == event_in.name
    )
    try:
        # Row lock on Postgres so two moves of one alias record a consistent history.
        alias = session.exec(query.with_for_update()).first()
        previous = alias.checkpoint_id if alias is not None else None
        if alias is None:
            alias = Alias.model_validate(event_in)
        alias.sqlmodel_update(
            {"checkpoint_id": event_in.checkpoint_id, "version": event_in.version}
        )
        alias.updated_at = utcnow()
        event = AliasEvent.model_validate(
            event_in, update={"previous_checkpoint_id": previous, "idempotency_key": key}
        )
        session.add(alias)
        session.add(event)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    session.refresh(alias)
    return alias


def get_alias(*, session: Session, experiment_id: int, name: str) -> Alias:
    """Return an experiment's alias `name` (NotFoundError naming both if it is not set)."""
    experiment = _get(session, Experiment, experiment_id)
    query = select(Alias).where(Alias.experiment_id == experiment_id, Alias.name == name)
    row = session.exec(query).first()
    if row is None:
        raise NotFoundError(f"alias '@{name}' not set for experiment '{experiment.name}'")
    return row


def list_aliases(*, session: Session, experiment_id: int | None = None) -> list[Alias]:
    """List aliases (of one experiment, or all) by experiment, then name."""
    query = select(Alias)
    if experiment_id is not None:
        _get(session, Experiment, experiment_id)
        query = query.where(Alias.experiment_id == experiment_id)
    return list(session.exec(query.order_by(col(Alias.experiment_id), col(Alias.name))).all())


def alias_history(*, session: Session, experiment_id: int, name: str) -> list[AliasEvent]:
    """List the moves of an experiment's alias, newest first."""
    _get(session, Experiment, experiment_id)
    query = (
        select(AliasEvent)
        .where(AliasEvent.experiment_id == experiment_id, AliasEvent.name == name)
        .order_by(col(AliasEvent.created_at).desc(), col(AliasEvent.id).desc())
    )
    return list(session.exec(query).all())


# --- helpers ---------------------------------------------------------------------------


def _get(session: Session, model: type[T], row_id: int) -> T:
    row = session.get(model, row_id)
    if row is None:
        raise NotFoundError(f"{_noun(model)} {row_id} not found")
    return row


def _noun(model: type[Any]) -> str:
    return str(getattr(model, "__tablename__", model.__name__.lower())).replace("_", " ")


def _count(session: Session, query: SelectOfScalar[Any]) -> int:
    return session.exec(select(func.count()).select_from(query.subquery())).one()


def _insert_or_reselect(*, session: Session, row: T, query: SelectOfScalar[T]) -> T:
    """Insert `row`; if a concurrent writer inserted the same unique key first, return theirs."""
    session.add(row)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        existing = session.exec(query).first()
        if existing is None:
            raise
        return existing
    session.refresh(row)
    return row


def _check_finite(what: str, values: dict[str, float]) -> None:
    bad = [key for key, value in values.items() if not math.isfinite(value)]
    if bad:
        raise ValueError(f"{what}: {', '.join(bad)} not finite; JSON cannot store NaN or inf")
