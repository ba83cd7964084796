"""Request bodies and parameter types of the API that are not registry entities.

Entities (`RunCreate`, `CheckpointPublic`, ...) live in `service.models`; this module
holds only what HTTP adds: bodies that bundle several inputs (an evaluation with its
examples), the runner protocol's messages, bounded id/paging parameters (ids are
32-bit integers on Postgres, so larger numbers are refused with 422, not sent to the DB)
and the `Idempotency-Key` header that makes a retried write safe.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Header, Path, Query
from pydantic import AwareDatetime, Field
from sqlmodel import SQLModel

from service.models import IDEMPOTENCY_KEY_LEN, EvalExampleCreate, EvaluationCreate

MAX_ID = 2**31 - 1
#: Alias names as `evalctl promote` accepts them.
ALIAS_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,99}$"

IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
IdQuery = Annotated[int | None, Query(ge=1, le=MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=1000, description="Page size.")]
Offset = Annotated[int, Query(ge=0, le=MAX_ID, description="Rows to skip.")]
AliasName = Annotated[str, Path(pattern=ALIAS_PATTERN, description="e.g. production")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=IDEMPOTENCY_KEY_LEN,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="Chosen by the client once per request and sent again on each retry "
        "of it: a retry returns the first answer instead of writing twice. The same key "
        "with a different request: 422.",
    ),
]


class EvaluationRecord(SQLModel):
    """An evaluation and its per-example scores, recorded in one transaction."""

    evaluation: EvaluationCreate
    examples: list[EvalExampleCreate] = Field(default_factory=list)


class ExampleScore(SQLModel):
    """One example's scores and cluster id (what `Registry.list_example_scores` returns)."""

    example_id: str
    scores: dict[str, float]
    cluster: str | None = None


class ExampleScoresPublic(SQLModel):
    data: list[ExampleScore]
    count: int


class AliasSet(SQLModel):
    """Point an alias at a checkpoint (`Registry.set_alias` minus the path parameters)."""

    checkpoint_id: int = Field(ge=1, le=MAX_ID)
    actor: str = Field(min_length=1, max_length=200, description="Who moves it (EVALCTL_ACTOR).")
    action: Literal["promote", "rollback"] = "promote"
    gate: dict[str, Any] | None = None
    version: int | None = Field(
        default=None,
        ge=1,
        le=MAX_ID,
        description="Ignored: the service registers the MLflow model version itself.",
    )


# --- tokens ----------------------------------------------------------------------------


class TokenRequest(SQLModel):
    """A token to create; the response carries the plain token, shown this once."""

    name: str = Field(min_length=1, max_length=200, description="What it is for, e.g. 'ci'.")
    scopes: list[Literal["read", "write", "runner", "admin"]] = Field(min_length=1)
    expires_at: AwareDatetime | None = Field(default=None, description="Never, if unset.")


# --- the runner protocol ---------------------------------------------------------------

RunnerId = Annotated[int, Field(ge=1, le=MAX_ID, description="The id POST /runners returned.")]
LeaseSeconds = Annotated[
    float,
    Field(
        ge=1,
        le=86_400,
        description="Lease length; the server shortens it to its cap "
        "(EVALCTL_SERVER__MAX_LEASE_SECONDS, default 600).",
    ),
]


class ClaimRequest(SQLModel):
    """Ask for a job; the server waits up to `wait` seconds for one to be queued."""

    runner_id: RunnerId
    labels: list[str] = Field(default_factory=list, description="The runner's labels.")
    gpus: int = Field(default=0, ge=0, le=4096, description="GPUs the runner has.")
    lease_seconds: LeaseSeconds = 300.0
    wait: float = Field(default=0.0, ge=0, le=60, description="Long-poll up to this many s.")


class HeartbeatRequest(SQLModel):
    """Renew the lease on a job this runner holds."""

    runner_id: RunnerId
    lease_seconds: LeaseSeconds = 300.0


class LogLines(SQLModel):
    """Lines of output to append to a job's log."""

    runner_id: RunnerId
    lines: list[str] = Field(max_length=10_000)


class JobRunLink(SQLModel):
    """The run a job created or resumes."""

    runner_id: RunnerId
    run_id: int = Field(ge=1, le=MAX_ID)


class FinishRequest(SQLModel):
    """A job's outcome; a retryable failure with attempts left is queued again."""

    runner_id: RunnerId
    status: Literal["succeeded", "failed", "cancelled"]
    failure_reason: str | None = None
    run_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    retryable: bool = False


class RunnerHeartbeat(SQLModel):
    """A runner is alive, running `current_job_id` (None: idle)."""

    current_job_id: int | None = Field(default=None, ge=1, le=MAX_ID)
