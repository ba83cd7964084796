"""SQLModel entities of the registry's control plane, one module per table family.

Each entity follows one family: `XBase` (shared fields), `XCreate` (input), `XUpdate`
(partial input), `X(table=True)` (the row), `XPublic` (output), `XsPublic(data, count)`.
MLflow keeps telemetry (step metrics, params, artifacts); rows here link to it by id.
Schema changes go through Alembic (`alembic/versions`), never `create_all` in production.

Modules: `experiments`, `runs`, `checkpoints`, `evaluations` (with per-example scores),
`aliases` (with their history), `tokens`, `jobs` (with their logs), `runners`; shared
column types in `_common`. Importing this package registers every table on
`SQLModel.metadata` (Alembic's `env.py` and the migration test rely on it), so a new
table module must be imported here; names are re-exported, so callers import from
`service.models`, not from its modules.
"""

from __future__ import annotations

from service.models._common import (
    IDEMPOTENCY_KEY_LEN,
    JSONType,
    StatusString,
    TZDateTime,
    idempotency_key_field,
    utcnow,
)
from service.models.aliases import (
    ALIAS_ACTIONS,
    Alias,
    AliasBase,
    AliasCreate,
    AliasesPublic,
    AliasEvent,
    AliasEventBase,
    AliasEventCreate,
    AliasEventPublic,
    AliasEventsPublic,
    AliasPublic,
)
from service.models.checkpoints import (
    Checkpoint,
    CheckpointBase,
    CheckpointCreate,
    CheckpointPublic,
    CheckpointsPublic,
)
from service.models.evaluations import (
    EvalExample,
    EvalExampleBase,
    EvalExampleCreate,
    EvalExamplePublic,
    EvalExamplesPublic,
    Evaluation,
    EvaluationBase,
    EvaluationCreate,
    EvaluationPublic,
    EvaluationsPublic,
    EvaluationStatus,
)
from service.models.experiments import (
    Experiment,
    ExperimentBase,
    ExperimentCreate,
    ExperimentPublic,
    ExperimentsPublic,
)
from service.models.jobs import (
    JOB_KINDS,
    Job,
    JobBase,
    JobCreate,
    JobLog,
    JobLogBase,
    JobLogPublic,
    JobLogsPublic,
    JobPublic,
    JobsPublic,
    JobStatus,
)
from service.models.runners import (
    RUNNER_OFFLINE_AFTER_S,
    Runner,
    RunnerBase,
    RunnerCreate,
    RunnerPublic,
    RunnersPublic,
    RunnerStatus,
)
from service.models.runs import Run, RunBase, RunCreate, RunPublic, RunsPublic, RunStatus, RunUpdate
from service.models.tokens import (
    TOKEN_PREFIX_LEN,
    TOKEN_SCOPES,
    ApiToken,
    ApiTokenBase,
    ApiTokenCreate,
    ApiTokenCreated,
    ApiTokenPublic,
    ApiTokensPublic,
)

__all__ = [
    "ALIAS_ACTIONS",
    "IDEMPOTENCY_KEY_LEN",
    "JOB_KINDS",
    "RUNNER_OFFLINE_AFTER_S",
    "TOKEN_PREFIX_LEN",
    "TOKEN_SCOPES",
    "Alias",
    "AliasBase",
    "AliasCreate",
    "AliasEvent",
    "AliasEventBase",
    "AliasEventCreate",
    "AliasEventPublic",
    "AliasEventsPublic",
    "AliasPublic",
    "AliasesPublic",
    "ApiToken",
    "ApiTokenBase",
    "ApiTokenCreate",
    "ApiTokenCreated",
    "ApiTokenPublic",
    "ApiTokensPublic",
    "Checkpoint",
    "CheckpointBase",
    "CheckpointCreate",
    "CheckpointPublic",
    "CheckpointsPublic",
    "EvalExample",
    "EvalExampleBase",
    "EvalExampleCreate",
    "EvalExamplePublic",
    "EvalExamplesPublic",
    "Evaluation",
    "EvaluationBase",
    "EvaluationCreate",
    "EvaluationPublic",
    "EvaluationStatus",
    "EvaluationsPublic",
    "Experiment",
    "ExperimentBase",
    "ExperimentCreate",
    "ExperimentPublic",
    "ExperimentsPublic",
    "JSONType",
    "Job",
    "JobBase",
    "JobCreate",
    "JobLog",
    "JobLogBase",
    "JobLogPublic",
    "JobLogsPublic",
    "JobPublic",
    "JobStatus",
    "JobsPublic",
    "Run",
    "RunBase",
    "RunCreate",
    "RunPublic",
    "RunStatus",
    "RunUpdate",
    "Runner",
    "RunnerBase",
    "RunnerCreate",
    "RunnerPublic",
    "RunnerStatus",
    "RunnersPublic",
    "RunsPublic",
    "StatusString",
    "TZDateTime",
    "idempotency_key_field",
    "utcnow",
]
