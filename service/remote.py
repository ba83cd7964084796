"""The registry over HTTP: `RemoteRegistry` implements `Registry` against `evalctl serve`.

`ApiClient` owns the transport: bearer token, JSON in and out, retries and error mapping.
Connection errors, timeouts and 502/503/504 (the service is down, restarting, or behind a
gateway that cannot reach it) are retried with exponential backoff for up to `retry_for`
seconds (default 60, `EVALCTL_RETRY_SECONDS`; a call may ask for less), so a runner
survives a service restart mid-job. A 500 is a bug in the service, not an outage: a read
(GET, HEAD) that gets one fails at once with the service's message, and a write is sent
at most `WRITE_500_RETRIES` more times (it may have committed before failing to answer).
Retrying a write is safe: every write (any method but GET and HEAD) carries an
`Idempotency-Key` made once per call and sent again on each retry of it, and the service
stores it with the row the write creates, so a write whose answer was lost (the service
died after committing, a proxy dropped the answer) is not applied twice: the retry gets
the first answer. Answers map to the exceptions `LocalRegistry` raises: 404 ->
`NotFoundError` with the server's message, 401/403 -> `EvalctlError("token rejected:
...")`, 409 -> `LeaseError` when the lease is the conflict, else `EvalctlError`, 422 ->
`ValueError`, and a service that stays away -> `ServiceUnavailableError`.
`service.registry.open_registry()` picks the transport from the settings. Jobs and runners
are not part of `Registry`: `service.jobs_client` speaks that protocol.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from enum import Enum
from pathlib import PurePath
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from service.crud import LeaseError
from service.errors import EvalctlError, NotFoundError
from service.models import (
    AliasesPublic,
    AliasEventPublic,
    AliasEventsPublic,
    AliasPublic,
    CheckpointCreate,
    CheckpointPublic,
    CheckpointsPublic,
    EvalExampleCreate,
    EvalExamplesPublic,
    EvaluationCreate,
    EvaluationPublic,
    EvaluationsPublic,
    ExperimentPublic,
    ExperimentsPublic,
    RunCreate,
    RunPublic,
    RunsPublic,
    RunStatus,
    RunUpdate,
)
from service.registry import ExampleScores

if TYPE_CHECKING:
    from service.settings import Settings

log = logging.getLogger("evalctl.remote")
API_PREFIX = "/api/v1"
#: Answers worth waiting out: the service is restarting or overloaded, or a gateway in
#: front of it cannot reach it.
RETRY_STATUSES = frozenset({502, 503, 504})
#: Methods that read: never retried on a 500, and sent without an idempotency key.
READ_METHODS = frozenset({"GET", "HEAD"})
#: How many times a write answered 500 is sent again: it may have committed before the
#: service failed to answer (its idempotency key makes that harmless), but a 500 that
#: persists is a bug whose message the caller should see, not a wait.
WRITE_500_RETRIES = 2
#: The header that carries a write's idempotency key.
IDEMPOTENCY_HEADER = "Idempotency-Key"


class ServiceUnavailableError(EvalctlError):
    """The service could not be reached (or kept failing) for the whole retry budget."""


class ApiClient:
    """JSON over HTTP to `/api/v1` of `evalctl serve`, with retries and mapped errors."""

    def __init__(
        self, url: str, token: str, *, timeout: float = 30.0, retry_for: float = 60.0
    ) -> None:
        self.url = url.rstrip("/")
        self.retry_for = retry_for
        self._http = httpx.Client(
            base_url=self.url + API_PREFIX,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        retry_for: float | None = None,
    ) -> httpx.Response:
        """Send one request, retrying while the service is unreachable; raise mapped errors.

        A write carries `idempotency_key` (a fresh one if None), the same on every retry.
        `retry_for` overrides the client's retry budget for this call.
        """
        query = {k: v for k, v in (params or {}).items() if v is not None}
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        # Encoded here, not by httpx: a value JSON cannot hold (a set, NaN) fails before
        # sending, as LocalRegistry fails before writing, instead of being coerced.
        content = None if body is None else json.dumps(body, allow_nan=False, default=_encode)
        headers: dict[str, str] = {}
        if content is not None:
            headers["Content-Type"] = "application/json"
        reads = method.upper() in READ_METHODS
        if not reads:
            headers[IDEMPOTENCY_HEADER] = idempotency_key or uuid.uuid4().hex
        budget = self.retry_for if retry_for is None else retry_for
        deadline = time.monotonic() + budget
        delay, errors = 0.25, 0  # errors: answers 500 so far
        while True:
            try:
                response = self._http.request(
                    method, path, content=content, params=query, headers=headers, **extra
                )
            except httpx.TransportError as exc:
                problem = f"cannot reach {self.url}: {type(exc).__name__}: {exc}"
            else:
                status = response.status_code
                if status == 500:
                    errors += 1
                    if reads or errors > WRITE_500_RETRIES:
                        _raise_for(response)
                elif status not in RETRY_STATUSES:
                    _raise_for(response)
                    return response
                problem = f"{self.url} answered {status}: {_detail(response)}"
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServiceUnavailableError(f"{problem} (gave up after {budget:g} s)")
            log.warning("%s; retrying in %.1f s", problem, min(delay, left))
            time.sleep(min(delay, left))
            delay = min(delay * 2, 8.0)

    def get(self, path: str, **params: Any) -> Any:
        """GET `path` with query `params`; return the decoded JSON."""
        return self.call("GET", path, params=params).json()

    def send(self, method: str, path: str, body: Any) -> Any:
        """Send a JSON body; return the decoded JSON answer (None for 204)."""
        response = self.call(method, path, body=body)
        return None if response.status_code == 204 else response.json()


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return response.text.strip()[:500] or response.reason_phrase
    return detail if isinstance(detail, str) else str(detail)


def _raise_for(response: httpx.Response) -> None:
    status = response.status_code
    if status < 400:
        return
    detail = _detail(response)
    if status == 404:
        raise NotFoundError(detail)
    if status in (401, 403):
        raise EvalctlError(f"token rejected: {detail}")
    if status == 409:
        raise (LeaseError if "lease" in detail else EvalctlError)(detail)
    if status == 422:
        raise ValueError(detail)
    raise EvalctlError(f"{response.request.method} {response.request.url.path}: {status} {detail}")


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, PurePath):
        return str(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _body(model: Any, **kw: Any) -> Any:
    return model.model_dump(**kw)


class RemoteRegistry:
    """The registry behind `evalctl serve`, over HTTP (what remote runners and CLIs use)."""

    def __init__(
        self, url: str, token: str, *, timeout: float = 30.0, retry_for: float = 60.0
    ) -> None:
        self.api = ApiClient(url, token, timeout=timeout, retry_for=retry_for)

    def __repr__(self) -> str:
        return f"RemoteRegistry({self.api.url!r})"

    def get_or_create_experiment(self, *, name: str) -> ExperimentPublic:
        """Return the experiment called `name`, creating it if needed."""
        return ExperimentPublic.model_validate(
            self.api.send("POST", "/experiments", {"name": name})
        )

    def get_experiment(self, *, name: str) -> ExperimentPublic:
        """Return the experiment called `name` (NotFoundError, with a suggestion, if none)."""
        return ExperimentPublic.model_validate(self.api.get(f"/experiments/{quote(name, safe='')}"))

    def list_experiments(self) -> list[ExperimentPublic]:
        """List all experiments by name."""
        return ExperimentsPublic.model_validate(self.api.get("/experiments")).data

    def create_run(self, *, run_in: RunCreate) -> RunPublic:
        """Create a run."""
        return RunPublic.model_validate(self.api.send("POST", "/runs", _body(run_in)))

    def update_run(self, *, run_id: int, run_update: RunUpdate) -> RunPublic:
        """Apply the set fields of `run_update` to a run."""
        body = _body(run_update, exclude_unset=True)
        return RunPublic.model_validate(self.api.send("PATCH", f"/runs/{run_id}", body))

    def get_run(self, *, ref: str) -> RunPublic:
        """Return a run by id, or the newest run with that name (NotFoundError if none)."""
        return RunPublic.model_validate(self.api.get(f"/runs/{quote(ref, safe='')}"))

    def list_runs(
        self,
        *,
        experiment: str | None = None,
        status: RunStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> RunsPublic:
        """List runs, newest first."""
        state = RunStatus(status).value if status is not None else None
        page = self.api.get(
            "/runs", experiment=experiment, status=state, limit=limit, offset=offset
        )
        return RunsPublic.model_validate(page)

    def record_checkpoint(self, *, checkpoint_in: CheckpointCreate) -> CheckpointPublic:
        """Record a checkpoint; idempotent on (run, step, sha256)."""
        answer = self.api.send("POST", "/checkpoints", _body(checkpoint_in))
        return CheckpointPublic.model_validate(answer)

    def get_checkpoint(self, *, checkpoint_id: int) -> CheckpointPublic:
        """Return a checkpoint (NotFoundError if none)."""
        return CheckpointPublic.model_validate(self.api.get(f"/checkpoints/{checkpoint_id}"))

    def list_checkpoints(self, *, run_id: int) -> list[CheckpointPublic]:
        """List a run's checkpoints by step."""
        return CheckpointsPublic.model_validate(self.api.get(f"/runs/{run_id}/checkpoints")).data

    def record_evaluation(
        self, *, evaluation_in: EvaluationCreate, examples: Sequence[EvalExampleCreate] = ()
    ) -> EvaluationPublic:
        """Record an evaluation and its per-example scores in one transaction."""
        body = {"evaluation": _body(evaluation_in), "examples": [_body(e) for e in examples]}
        return EvaluationPublic.model_validate(self.api.send("POST", "/evaluations", body))

    def get_evaluation(self, *, evaluation_id: int) -> EvaluationPublic:
        """Return an evaluation (NotFoundError if none)."""
        return EvaluationPublic.model_validate(self.api.get(f"/evaluations/{evaluation_id}"))

    def list_evaluations(
        self, *, run_id: int | None = None, checkpoint_id: int | None = None
    ) -> list[EvaluationPublic]:
        """List evaluations of a run's checkpoints or of one checkpoint."""
        page = self.api.get("/evaluations", run_id=run_id, checkpoint_id=checkpoint_id)
        return EvaluationsPublic.model_validate(page).data

    def list_examples(
        self, *, evaluation_id: int, limit: int | None = None, offset: int = 0
    ) -> EvalExamplesPublic:
        """List an evaluation's per-example scores in their original order."""
        page = self.api.get(f"/evaluations/{evaluation_id}/examples", limit=limit, offset=offset)
        return EvalExamplesPublic.model_validate(page)

    def list_example_scores(self, *, evaluation_id: int) -> list[ExampleScores]:
        """Return every example's (example_id, scores, cluster id), fast, in recorded order."""
        rows: list[dict[str, Any]] = self.api.get(f"/evaluations/{evaluation_id}/scores")["data"]
        return [
            ExampleScores(row["example_id"], row.get("scores") or {}, row.get("cluster"))
            for row in rows
        ]

    def set_alias(
        self,
        *,
        experiment_id: int,
        name: str,
        checkpoint_id: int,
        actor: str,
        action: str = "promote",
        gate: dict[str, Any] | None = None,
        version: int | None = None,
    ) -> AliasPublic:
        """Point an alias at a checkpoint and record the move in its history."""
        body = {
            "checkpoint_id": checkpoint_id,
            "actor": actor,
            "action": action,
            "gate": gate,
            "version": version,
        }
        answer = self.api.send("PUT", f"/aliases/{experiment_id}/{name}", body)
        return AliasPublic.model_validate(answer)

    def get_alias(self, *, experiment_id: int, name: str) -> AliasPublic:
        """Return an experiment's alias (NotFoundError if it is not set)."""
        return AliasPublic.model_validate(self.api.get(f"/aliases/{experiment_id}/{name}"))

    def list_aliases(self, *, experiment_id: int | None = None) -> list[AliasPublic]:
        """List aliases of one experiment, or of all, by experiment and name."""
        page = self.api.get("/aliases", experiment_id=experiment_id)
        return AliasesPublic.model_validate(page).data

    def alias_history(self, *, experiment_id: int, name: str) -> list[AliasEventPublic]:
        """List an alias's moves, newest first."""
        page = self.api.get(f"/aliases/{experiment_id}/{name}/history")
        return AliasEventsPublic.model_validate(page).data


def remote_settings() -> tuple[str, str] | None:
    """Return (url, token) when EVALCTL_URL and EVALCTL_TOKEN are both set, else None."""
    from service.settings import get_settings

    settings = get_settings()
    if settings.url and settings.token:
        return settings.url, settings.token
    return None


def remote_tracking(settings: Settings, url: str, token: str) -> Settings:
    """Return `settings` with MLflow at the service's `/mlflow` mount, unless
    EVALCTL_MLFLOW_URI names another tracking server; the token goes to MLflow's client."""
    if settings.mlflow_uri is not None:
        return settings
    os.environ.setdefault("MLFLOW_TRACKING_TOKEN", token)
    return settings.model_copy(update={"mlflow_uri": f"{url.rstrip('/')}/mlflow"})
