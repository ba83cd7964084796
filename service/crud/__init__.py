"""Data access for the registry: every SQL statement evalctl runs against its tables,
one module per table family.

Functions take keyword-only arguments and a SQLModel `Session`, return table rows, and
commit their own writes (one call, one transaction). Unknown ids raise `NotFoundError`
with a one-line message. Callers that must not hand out rows (the `Registry`
implementations, the API routes) convert them to `*Public` models. This package does not
open sessions or engines (`service.db`, `service.local`) nor check scopes (the API).

Modules: `experiments`, `runs`, `checkpoints`, `evaluations`, `aliases`, `tokens`, `jobs`
(the queue with leases), `runners`; `_common` holds the shared lookups, SQLite write
transactions and the idempotency helpers. Writes that a remote client may retry take an
`idempotency_key` (the request's `Idempotency-Key`, None locally): it is stored on the row
the write creates (unique), so a retry finds that row and returns it instead of writing
again, even when the two race (`insert_once`); the same key with a different request
raises `IdempotencyKeyReused` (422). Callers use the names re-exported here
(`from service import crud; crud.claim_job(...)`), not the modules.
"""

from __future__ import annotations

from service.crud._common import IdempotencyKeyReused, insert_once, replayed
from service.crud.aliases import (
    alias_event_for_key,
    alias_history,
    get_alias,
    list_aliases,
    set_alias,
)
from service.crud.checkpoints import get_checkpoint, list_checkpoints, record_checkpoint
from service.crud.evaluations import (
    example_scores,
    get_evaluation,
    list_evaluations,
    list_examples,
    record_evaluation,
)
from service.crud.experiments import (
    get_experiment,
    get_experiment_by_name,
    get_or_create_experiment,
    list_experiments,
)
from service.crud.jobs import (
    LeaseError,
    append_job_logs,
    cancel_job,
    claim_job,
    enqueue_job,
    finish_job,
    get_job,
    heartbeat_job,
    job_logs,
    list_jobs,
    requeue_expired,
    set_job_run,
)
from service.crud.runners import (
    RunnerNameTaken,
    get_runner,
    list_runners,
    register_runner,
    runner_heartbeat,
)
from service.crud.runs import create_run, find_run, get_run, list_runs, update_run
from service.crud.tokens import (
    LAST_USED_RESOLUTION,
    TOKEN_PREFIX,
    active_token,
    authenticate_token,
    count_tokens,
    create_token,
    hash_token,
    list_tokens,
    revoke_token,
)

__all__ = [
    "LAST_USED_RESOLUTION",
    "TOKEN_PREFIX",
    "IdempotencyKeyReused",
    "LeaseError",
    "RunnerNameTaken",
    "active_token",
    "alias_event_for_key",
    "alias_history",
    "append_job_logs",
    "authenticate_token",
    "cancel_job",
    "claim_job",
    "count_tokens",
    "create_run",
    "create_token",
    "enqueue_job",
    "example_scores",
    "find_run",
    "finish_job",
    "get_alias",
    "get_checkpoint",
    "get_evaluation",
    "get_experiment",
    "get_experiment_by_name",
    "get_job",
    "get_or_create_experiment",
    "get_run",
    "get_runner",
    "hash_token",
    "heartbeat_job",
    "insert_once",
    "job_logs",
    "list_aliases",
    "list_checkpoints",
    "list_evaluations",
    "list_examples",
    "list_experiments",
    "list_jobs",
    "list_runners",
    "list_runs",
    "list_tokens",
    "record_checkpoint",
    "record_evaluation",
    "register_runner",
    "replayed",
    "requeue_expired",
    "revoke_token",
    "runner_heartbeat",
    "set_alias",
    "set_job_run",
    "update_run",
]
