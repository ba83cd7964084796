"""The `run` table: one training run of a spec in an experiment, and its status.

A run links to its MLflow run by id (MLflow keeps the step metrics, params, artifacts);
its checkpoints are in `service.models.checkpoints`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlmodel import Field, SQLModel

from service.models._common import JSONType, TZDateTime, idempotency_key_field, utcnow


class RunStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


class RunBase(SQLModel):
    name: str = Field(index=True, max_length=200)
    experiment_id: int = Field(foreign_key="experiment.id", index=True)
    spec_text: str
    spec_hash: str = Field(max_length=64)
    spec_path: str | None = Field(default=None, description="Where the spec was read from.")
    git_sha: str | None = Field(default=None, max_length=64)
    base_model: str | None = Field(default=None, description="Where the base model came from.")
    base_model_hash: str | None = Field(default=None, max_length=64)
    dataset_hashes: dict[str, str] = Field(default_factory=dict, sa_type=JSONType)
    tags: dict[str, str] = Field(default_factory=dict, sa_type=JSONType)


class RunCreate(RunBase):
    status: RunStatus = RunStatus.queued


class RunUpdate(SQLModel):
    status: RunStatus | None = None
    failure_reason: str | None = None
    git_sha: str | None = None
    base_model: str | None = None
    base_model_hash: str | None = None
    dataset_hashes: dict[str, str] | None = None
    mlflow_run_id: str | None = None
    best_checkpoint_id: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class Run(RunBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str | None = idempotency_key_field("Key of the request that created it.")
    status: RunStatus = Field(default=RunStatus.queued, index=True, max_length=16)
    failure_reason: str | None = None
    mlflow_run_id: str | None = Field(default=None, max_length=64)
    best_checkpoint_id: int | None = Field(default=None)
    created_at: datetime = Field(default_factory=utcnow, sa_type=TZDateTime, index=True)
    started_at: datetime | None = Field(default=None, sa_type=TZDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=TZDateTime)


class RunPublic(RunBase):
    id: int
    status: RunStatus
    failure_reason: str | None
    mlflow_run_id: str | None
    best_checkpoint_id: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class RunsPublic(SQLModel):
    data: list[RunPublic]
    count: int
