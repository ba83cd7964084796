"""The `job` and `job_log` tables: work queued for runners (train a spec, evaluate
checkpoints), its lease, the keys that make retried requests harmless, and its log lines.

Kind and status are plain strings in the database (not DB enums), so a new kind or status
needs no migration. The queue's rules (claims, leases, retries) are `service.crud.jobs`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import field_validator
from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from service.models._common import (
    IDEMPOTENCY_KEY_LEN,
    JSONType,
    StatusString,
    TZDateTime,
    idempotency_key_field,
    utcnow,
)

JOB_KINDS = ("train", "eval")


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def final(self) -> bool:
        """Whether a job never leaves this status."""
        return self in (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)


class JobBase(SQLModel):
    """Work for a runner: train a spec, or evaluate checkpoints; `payload` says which."""

    kind: str = Field(max_length=16, schema_extra={"json_schema_extra": {"enum": list(JOB_KINDS)}})
    spec_text: str
    spec_path: str | None = Field(default=None, description="Where the spec was read from.")
    payload: dict[str, Any] = Field(
        default_factory=dict,
        sa_type=JSONType,
        description="Kind-specific input, e.g. {'checkpoint_ids': [...], 'evaluators': [...]}.",
    )
    gpus: int = Field(default=1, ge=0, description="GPUs the runner must have (0: CPU job).")
    labels: list[str] = Field(
        default_factory=list, sa_type=JSONType, description="Labels the runner must all have."
    )
    run_id: int | None = Field(default=None, foreign_key="run.id", index=True)
    max_attempts: int = Field(default=3, ge=1, description="Claims before the job fails.")
    created_by_token_id: int | None = Field(default=None, description="The API token used.")

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        if kind not in JOB_KINDS:
            raise ValueError(f"job kind must be one of {', '.join(JOB_KINDS)}, not {kind!r}")
        return kind


class JobCreate(JobBase):
    pass


class Job(JobBase, table=True):
    # The claim's scan: queued rows, oldest first, without a sort even when history is long.
    __table_args__ = (Index("ix_job_status_created_at", "status", "created_at"),)
    id: int | None = Field(default=None, primary_key=True)
    status: JobStatus = Field(default=JobStatus.queued, sa_type=StatusString)
    attempts: int = Field(default=0, description="How many times the job was claimed.")
    lease_owner: int | None = Field(default=None, description="Id of the runner holding it.")
    runner_id: int | None = Field(
        default=None, description="Id of the runner that last claimed it (kept after it ends)."
    )
    lease_expires_at: datetime | None = Field(default=None, sa_type=TZDateTime)
    cancel_requested: bool = False
    failure_reason: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=TZDateTime, index=True)
    started_at: datetime | None = Field(default=None, sa_type=TZDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=TZDateTime)
    idempotency_key: str | None = idempotency_key_field("Key of the request that queued it.")
    claim_key: str | None = idempotency_key_field(
        "Key of the claim that holds the lease (cleared when the lease ends): a retried "
        "claim gets this job back."
    )
    finish_key: str | None = Field(
        default=None,
        max_length=IDEMPOTENCY_KEY_LEN,
        description="Key of the finish that ended the lease: a retried finish gets its answer.",
    )


class JobPublic(JobBase):
    id: int
    status: JobStatus
    attempts: int
    lease_owner: int | None
    runner_id: int | None = None
    lease_expires_at: datetime | None
    cancel_requested: bool
    failure_reason: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobsPublic(SQLModel):
    data: list[JobPublic]
    count: int


class JobLogBase(SQLModel):
    line: str


class JobLog(JobLogBase, table=True):
    __tablename__ = "job_log"
    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="job.id", index=True)
    batch_key: str | None = idempotency_key_field(
        "Key of the request that appended this line's batch (on its first line only)."
    )
    created_at: datetime = Field(default_factory=utcnow, sa_type=TZDateTime)


class JobLogPublic(JobLogBase):
    id: int
    job_id: int
    created_at: datetime


class JobLogsPublic(SQLModel):
    data: list[JobLogPublic]
    count: int
