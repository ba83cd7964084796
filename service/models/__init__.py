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

from pydantic import field_validator
from sqlalchemy import JSON, Index, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel
from sqlmodel.sql.sqltypes import UTCDateTime

JSONType = JSON().with_variant(JSONB(), "postgresql")
# DateTime(timezone=True) that also keeps the zone on SQLite (which stores none): binds
# as UTC, reads back as aware UTC.
TZDateTime = UTCDateTime()


#: Longest `Idempotency-Key` the API stores (a client's uuid4 hex is 32 characters).
IDEMPOTENCY_KEY_LEN = 100


def idempotency_key_field(description: str) -> Any:
    """Return the column that holds the `Idempotency-Key` of the request that wrote a row."""
    return Field(
        default=None,
        max_length=IDEMPOTENCY_KEY_LEN,
        unique=True,
        index=True,
        description=description,
    )


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
    idempotency_key: str | None = idempotency_key_field("Key of the request that recorded it.")
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
    idempotency_key: str | None = idempotency_key_field("Key of the request that moved it.")
    created_at: datetime = Field(default_factory=utcnow, sa_type=TZDateTime, index=True)


class AliasEventPublic(AliasEventBase):
    id: int
    created_at: datetime


class AliasEventsPublic(SQLModel):
    data: list[AliasEventPublic]
    count: int


# --- API tokens ------------------------------------------------------------------------

#: What a token may do; plain strings (not a DB enum) so a new scope needs no migration.
TOKEN_SCOPES = ("read", "write", "runner", "admin")
#: How many leading characters of a token are stored in clear, to tell tokens apart.
TOKEN_PREFIX_LEN = 8


def _check_scopes(scopes: list[str]) -> list[str]:
    unknown = [scope for scope in scopes if scope not in TOKEN_SCOPES]
    if unknown:
        raise ValueError(f"unknown scope(s) {unknown}; available: {', '.join(TOKEN_SCOPES)}")
    return scopes


class ApiTokenBase(SQLModel):
    """A bearer token for the API; only its sha256 is stored, never the token itself."""

    name: str = Field(max_length=200, description="What the token is for, e.g. 'ci'.")
    scopes: list[str] = Field(
        default_factory=list,
        sa_type=JSONType,
        description=f"Any of {', '.join(TOKEN_SCOPES)}.",
        schema_extra={"json_schema_extra": {"items": {"enum": list(TOKEN_SCOPES)}}},
    )
    expires_at: datetime | None = Field(default=None, sa_type=TZDateTime)

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, scopes: list[str]) -> list[str]:
        return _check_scopes(scopes)


class ApiTokenCreate(ApiTokenBase):
    pass


class ApiToken(ApiTokenBase, table=True):
    __tablename__ = "api_token"
    id: int | None = Field(default=None, primary_key=True)
    prefix: str = Field(max_length=TOKEN_PREFIX_LEN, description="The token's first characters.")
    token_hash: str = Field(max_length=64, unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=TZDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=TZDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=TZDateTime)


class ApiTokenPublic(ApiTokenBase):
    id: int
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiTokenCreated(ApiTokenPublic):
    """A token just created: the only time the plain token is shown."""

    token: str


class ApiTokensPublic(SQLModel):
    data: list[ApiTokenPublic]
    count: int


# --- jobs ------------------------------------------------------------------------------

#: Plain strings (not DB enums) so a new kind or status needs no migration.
JOB_KINDS = ("train", "eval")
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
#: Statuses a job never leaves.
JOB_FINAL_STATUSES = ("succeeded", "failed", "cancelled")


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
    status: str = Field(default="queued", max_length=16)
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
    status: str
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


# --- runners ---------------------------------------------------------------------------

RUNNER_STATUSES = ("idle", "busy", "offline")
#: A runner not heard from for this long is listed as offline.
RUNNER_OFFLINE_AFTER_S = 60.0


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
    status: str = Field(default="idle", max_length=16)
    last_heartbeat_at: datetime = Field(default_factory=utcnow, sa_type=TZDateTime)
    current_job_id: int | None = Field(default=None, foreign_key="job.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=TZDateTime)


class RunnerPublic(RunnerBase):
    id: int
    token_id: int | None = None
    status: str
    last_heartbeat_at: datetime
    current_job_id: int | None
    created_at: datetime


class RunnersPublic(SQLModel):
    data: list[RunnerPublic]
    count: int
