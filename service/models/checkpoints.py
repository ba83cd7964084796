"""The `checkpoint` table: saved weights of a run at one step, identified by (run, step, sha256).

That identity is unique, so recording the same checkpoint twice (a re-delivered job) is
harmless.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from service.models._common import TZDateTime, utcnow


class CheckpointBase(SQLModel):
    run_id: int = Field(foreign_key="run.id", index=True)
    step: int = Field(ge=0, description="Optimizer step; 0 is the base model.")
    path: str = Field(description="Folder holding the weights (adapter or full model).")
    sha256: str = Field(max_length=64, description="Hash of the weight files.")
    train_loss: float | None = None
    eval_loss: float | None = None


class CheckpointCreate(CheckpointBase):
    pass


class Checkpoint(CheckpointBase, table=True):
    __table_args__ = (UniqueConstraint("run_id", "step", "sha256", name="uq_checkpoint_identity"),)
    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=TZDateTime)


class CheckpointPublic(CheckpointBase):
    id: int
    created_at: datetime


class CheckpointsPublic(SQLModel):
    data: list[CheckpointPublic]
    count: int
