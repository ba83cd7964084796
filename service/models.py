"""SQLModel entities of the registry's control plane.

Each entity follows one family: `XBase` (shared fields), `XCreate` (input), `XUpdate`
(partial input), `X(table=True)` (the row), `XPublic` (output), `XsPublic(data, count)`.
MLflow keeps telemetry (step metrics, params, artifacts); rows here link to it by id.
Schema changes go through Alembic (`alembic/versions`), never `create_all` in production.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel
from sqlmodel.sql.sqltypes import UTCDateTime

JSONType = JSON().with_variant(JSONB(), "postgresql")
# DateTime(timezone=True) that also keeps the zone on SQLite (which stores none): binds
# as UTC, reads back as aware UTC.
TZDateTime = UTCDateTime()


def utcnow() -> datetime:
    """Return the current time, timezone-aware (UTC)."""
    return datetime.now(UTC)


class RunStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


class EvaluationStatus(StrEnum):
    succeeded = "succeeded"
    failed = "failed"


# --- experiments -----------------------------------------------------------------------


class ExperimentBase(SQLModel):
    name: str = Field(index=True, unique=True, max_length=200)


class ExperimentCreate(ExperimentBase):
    pass


class Experiment(ExperimentBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=TZDateTime)


class ExperimentPublic(ExperimentBase):
    id: int
    created_at: datetime


class ExperimentsPublic(SQLModel):
    data: list[ExperimentPublic]
    count: int


# --- runs ------------------------------------------------------------------------------


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


# --- checkpoints -----------------------------------------------------------------------


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


# --- evaluations -----------------------------------------------------------------------


class EvaluationBase(SQLModel):
    checkpoint_id: int = Field(foreign_key="checkpoint.id", index=True)
    evaluator: str = Field(index=True, max_length=100)
    config_hash: str = Field(max_length=64)
    status: EvaluationStatus = Field(default=EvaluationStatus.succeeded, max_length=16)
    error: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict, sa_type=JSONType)
    n_examples: int = 0
    duration_s: float = 0.0


class EvaluationCreate(EvaluationBase):
    pass


class Evaluation(EvaluationBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=TZDateTime)


class EvaluationPublic(EvaluationBase):
    id: int
    created_at: datetime


class EvaluationsPublic(SQLModel):
    data: list[EvaluationPublic]
    count: int


class EvalExampleBase(SQLModel):
    """One example's scores within an evaluation (the unit the gate pairs on)."""

    position: int = Field(description="Order within the evaluation.")
    example_id: str = Field(max_length=200)
    scores: dict[str, float] = Field(default_factory=dict, sa_type=JSONType)
    details: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)


class EvalExampleCreate(EvalExampleBase):
    pass


class EvalExample(EvalExampleBase, table=True):
    __tablename__ = "eval_example"
    id: int | None = Field(default=None, primary_key=True)
    evaluation_id: int = Field(foreign_key="evaluation.id", index=True)


class EvalExamplePublic(EvalExampleBase):
    id: int
    evaluation_id: int


class EvalExamplesPublic(SQLModel):
    data: list[EvalExamplePublic]
    count: int


# --- aliases ---------------------------------------------------------------------------

#: What an alias event did; plain strings (not a DB enum) so new actions need no migration.
ALIAS_ACTIONS = ("promote", "rollback")


class AliasBase(SQLModel):
    """A movable name (e.g. 'production') pointing at one checkpoint of an experiment."""

    experiment_id: int = Field(foreign_key="experiment.id", index=True)
    name: str = Field(max_length=100, description="Alias name, e.g. 'production'.")
    checkpoint_id: int = Field(foreign_key="checkpoint.id")
    version: int | None = Field(default=None, description="MLflow registered model version.")


class AliasCreate(AliasBase):
    pass


class Alias(AliasBase, table=True):
    __table_args__ = (UniqueConstraint("experiment_id", "name", name="uq_alias_name"),)
    id: int | None = Field(default=None, primary_key=True)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=TZDateTime)


class AliasPublic(AliasBase):
    id: int
    updated_at: datetime


class AliasesPublic(SQLModel):
    data: list[AliasPublic]
    count: int


class AliasEventBase(SQLModel):
    """One move of an alias (its history); `gate` holds the gate summary when one ran."""

    experiment_id: int = Field(foreign_key="experiment.id", index=True)
    name: str = Field(max_length=100)
    checkpoint_id: int = Field(foreign_key="checkpoint.id")
    previous_checkpoint_id: int | None = Field(default=None, foreign_key="checkpoint.id")
    version: int | None = None
    action: str = Field(max_length=16, description="'promote' or 'rollback'.")
    actor: str = Field(max_length=200, description="EVALCTL_ACTOR, else the OS user.")
    token_id: int | None = Field(default=None, description="The API token used, if any.")
    gate: dict[str, Any] | None = Field(default=None, sa_type=JSONType)


class AliasEventCreate(AliasEventBase):
    pass


class AliasEvent(AliasEventBase, table=True):
    __tablename__ = "alias_event"
    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=TZDateTime, index=True)


class AliasEventPublic(AliasEventBase):
    id: int
    created_at: datetime


class AliasEventsPublic(SQLModel):
    data: list[AliasEventPublic]
    count: int
