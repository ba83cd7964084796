"""Data access for checkpoints: record one (idempotent on run, step and sha256), look one
up, and list a run's."""

from __future__ import annotations

from sqlmodel import Session, col, select

from service.crud._common import get_or_insert, get_row
from service.models import Checkpoint, CheckpointCreate, Run


def record_checkpoint(*, session: Session, checkpoint_in: CheckpointCreate) -> Checkpoint:
    """Record a checkpoint; the same (run, step, sha256) returns the existing row."""
    get_row(session, Run, checkpoint_in.run_id)
    query = select(Checkpoint).where(
        Checkpoint.run_id == checkpoint_in.run_id,
        Checkpoint.step == checkpoint_in.step,
        Checkpoint.sha256 == checkpoint_in.sha256,
    )
    return get_or_insert(
        session=session, query=query, build=lambda: Checkpoint.model_validate(checkpoint_in)
    )


def get_checkpoint(*, session: Session, checkpoint_id: int) -> Checkpoint:
    """Return a checkpoint by id."""
    return get_row(session, Checkpoint, checkpoint_id)


def list_checkpoints(*, session: Session, run_id: int) -> list[Checkpoint]:
    """List a run's checkpoints by step (then by when they were recorded)."""
    get_row(session, Run, run_id)
    query = (
        select(Checkpoint)
        .where(Checkpoint.run_id == run_id)
        .order_by(col(Checkpoint.step), col(Checkpoint.id))
    )
    return list(session.exec(query).all())
