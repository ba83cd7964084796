"""Checkpoint routes: record (idempotent on run, step, sha256) and get.

A recorded path must lie inside the server's storage roots (`service.storage`): it is what
a promotion later registers with MLflow, and what MLflow then serves. Outside -> 409.
"""

from __future__ import annotations

from fastapi import APIRouter

from service import crud
from service.api.auth import Reader, Reporter
from service.api.deps import AppSettings, ReadSession, WriteSession
from service.api.schemas import IdPath
from service.models import CheckpointCreate, CheckpointPublic
from service.storage import confine_checkpoint

router = APIRouter(prefix="/checkpoints", tags=["checkpoints"])


@router.post("", response_model=CheckpointPublic)
def record_checkpoint(
    checkpoint_in: CheckpointCreate, _: Reporter, settings: AppSettings, session: WriteSession
) -> CheckpointPublic:
    """Record a checkpoint inside the storage roots; the same (run, step, sha256) is reused."""
    confine_checkpoint(checkpoint_in.path, settings)
    row = crud.record_checkpoint(session=session, checkpoint_in=checkpoint_in)
    return CheckpointPublic.model_validate(row)


@router.get("/{checkpoint_id}", response_model=CheckpointPublic)
def get_checkpoint(checkpoint_id: IdPath, _: Reader, session: ReadSession) -> CheckpointPublic:
    """Return a checkpoint."""
    row = crud.get_checkpoint(session=session, checkpoint_id=checkpoint_id)
    return CheckpointPublic.model_validate(row)
