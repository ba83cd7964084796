"""Data access for aliases: move one and record the move (one transaction, once per
idempotency key), look one up, list them, and an alias's history.

Moving an alias in MLflow's registry too is `service.promotion`; this module only writes
our tables.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from service.crud._common import get_row, replayed
from service.errors import EvalctlError, NotFoundError
from service.models import (
    ALIAS_ACTIONS,
    Alias,
    AliasEvent,
    AliasEventCreate,
    Checkpoint,
    Experiment,
    Run,
    utcnow,
)


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
    experiment = get_row(session, Experiment, experiment_id)
    checkpoint = get_row(session, Checkpoint, checkpoint_id)
    owner = get_row(session, Run, checkpoint.run_id)
    if owner.experiment_id != experiment_id:
        other = get_row(session, Experiment, owner.experiment_id).name
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
    experiment = get_row(session, Experiment, experiment_id)
    query = select(Alias).where(Alias.experiment_id == experiment_id, Alias.name == name)
    row = session.exec(query).first()
    if row is None:
        raise NotFoundError(f"alias '@{name}' not set for experiment '{experiment.name}'")
    return row


def list_aliases(*, session: Session, experiment_id: int | None = None) -> list[Alias]:
    """List aliases (of one experiment, or all) by experiment, then name."""
    query = select(Alias)
    if experiment_id is not None:
        get_row(session, Experiment, experiment_id)
        query = query.where(Alias.experiment_id == experiment_id)
    return list(session.exec(query.order_by(col(Alias.experiment_id), col(Alias.name))).all())


def alias_history(*, session: Session, experiment_id: int, name: str) -> list[AliasEvent]:
    """List the moves of an experiment's alias, newest first."""
    get_row(session, Experiment, experiment_id)
    query = (
        select(AliasEvent)
        .where(AliasEvent.experiment_id == experiment_id, AliasEvent.name == name)
        .order_by(col(AliasEvent.created_at).desc(), col(AliasEvent.id).desc())
    )
    return list(session.exec(query).all())
