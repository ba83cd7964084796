"""The `runner` table: machines that pull jobs, what they offer (labels, GPUs), which token
registered them and when they were last heard from.

Status is a plain string in the database (not a DB enum); `offline` is never stored, only
computed for listings (`service.crud.runners.list_runners`).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlmodel import Field, SQLModel

from service.models._common import JSONType, StatusString, TZDateTime, utcnow

#: A runner not heard from for this long is listed as offline.
RUNNER_OFFLINE_AFTER_S = 60.0


class RunnerStatus(StrEnum):
    idle = "idle"
    busy = "busy"
    offline = "offline"


class RunnerBase(SQLModel):
    """A machine that pulls jobs; `labels` and `gpus` decide which jobs it may take."""

    name: str = Field(max_length=200, unique=True, index=True)
    labels: list[str] = Field(default_factory=list, sa_type=JSONType)
    gpus: int = Field(default=0, ge=0)


class RunnerCreate(RunnerBase):
    pass


class Runner(RunnerBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    token_id: int | None = Field(
        default=None,
        description="The API token that registered it; only that token may act as it.",
    )
    status: RunnerStatus = Field(default=RunnerStatus.idle, sa_type=StatusString)
    last_heartbeat_at: datetime = Field(default_factory=utcnow, sa_type=TZDateTime)
    current_job_id: int | None = Field(default=None, foreign_key="job.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=TZDateTime)


class RunnerPublic(RunnerBase):
    id: int
    token_id: int | None = None
    status: RunnerStatus
    last_heartbeat_at: datetime
    current_job_id: int | None
    created_at: datetime


class RunnersPublic(SQLModel):
    data: list[RunnerPublic]
    count: int
