"""The job queue and runner protocol over HTTP, for `evalctl submit/jobs` and runner agents.

`JobsClient` wraps the `/api/v1/jobs` and `/api/v1/runners` routes on the same transport
as `RemoteRegistry` (`service.remote.ApiClient`: retries, mapped errors; a lease lost is a
`LeaseError`). Each write carries its own `Idempotency-Key`, so a retried enqueue queues
one job, a retried claim gets back the job the lost answer held, and a retried finish or
log batch has one effect; a caller that sends a finish or a log batch again later (after
the transport gave up) passes the same key itself. It returns `*Public` models and holds
no queue logic: leases, re-queueing and label matching happen in the service
(`service.crud.jobs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from service.errors import NotFoundError
from service.models import (
    JobCreate,
    JobLogPublic,
    JobLogsPublic,
    JobPublic,
    JobsPublic,
    RunnerPublic,
)
from service.remote import ApiClient


class JobsClient:
    """Enqueue, list, cancel and run jobs through `evalctl serve`."""

    def __init__(self, api: ApiClient) -> None:
        self.api = api

    # --- users ---------------------------------------------------------------------------

    def enqueue(self, *, job_in: JobCreate) -> JobPublic:
        """Queue a job."""
        body = job_in.model_dump(mode="json", exclude={"created_by_token_id"})
        return JobPublic.model_validate(self.api.send("POST", "/jobs", body))

    def list_jobs(
        self, *, status: str | None = None, limit: int = 100, offset: int = 0
    ) -> JobsPublic:
        """List jobs, newest first."""
        page = self.api.get("/jobs", status=status, limit=limit, offset=offset)
        return JobsPublic.model_validate(page)

    def get(self, *, job_id: int) -> JobPublic:
        """Return a job."""
        return JobPublic.model_validate(self.api.get(f"/jobs/{job_id}"))

    def cancel(self, *, job_id: int) -> JobPublic:
        """Cancel a job (a running one is asked to stop at its next heartbeat)."""
        return JobPublic.model_validate(self.api.send("POST", f"/jobs/{job_id}/cancel", None))

    def logs(self, *, job_id: int, after_id: int = 0, limit: int = 1000) -> list[JobLogPublic]:
        """Return a job's log lines after `after_id`, oldest first."""
        page = self.api.get(f"/jobs/{job_id}/logs", after_id=after_id, limit=limit)
        return JobLogsPublic.model_validate(page).data

    # --- runners -------------------------------------------------------------------------

    def register_runner(self, *, name: str, labels: Sequence[str], gpus: int) -> RunnerPublic:
        """Register a runner (the same name again updates it)."""
        body = {"name": name, "labels": list(labels), "gpus": gpus}
        return RunnerPublic.model_validate(self.api.send("POST", "/runners", body))

    def runner_heartbeat(self, *, runner_id: int, current_job_id: int | None) -> RunnerPublic:
        """Say the runner is alive and which job it runs."""
        body = {"current_job_id": current_job_id}
        answer = self.api.send("POST", f"/runners/{runner_id}/heartbeat", body)
        return RunnerPublic.model_validate(answer)

    def claim(
        self,
        *,
        runner_id: int,
        labels: Sequence[str],
        gpus: int,
        lease_seconds: float,
        wait: float,
    ) -> JobPublic | None:
        """Lease a job this runner can run, waiting up to `wait` s; None when none came."""
        body = {
            "runner_id": runner_id,
            "labels": list(labels),
            "gpus": gpus,
            "lease_seconds": lease_seconds,
            "wait": wait,
        }
        response = self.api.call("POST", "/jobs/claim", body=body, timeout=wait + 30.0)
        return None if response.status_code == 204 else JobPublic.model_validate(response.json())

    def heartbeat(self, *, job_id: int, runner_id: int, lease_seconds: float) -> JobPublic:
        """Renew the lease (LeaseError if it was lost); `cancel_requested` says stop."""
        body = {"runner_id": runner_id, "lease_seconds": lease_seconds}
        return JobPublic.model_validate(self.api.send("POST", f"/jobs/{job_id}/heartbeat", body))

    def append_logs(
        self,
        *,
        job_id: int,
        runner_id: int,
        lines: Sequence[str],
        batch_key: str | None = None,
        retry_for: float | None = None,
    ) -> None:
        """Append lines to the job's log (once per `batch_key`, also when sent again later).

        `retry_for` caps how long this batch is retried (and each try waits), so that a
        failing batch does not hold up the caller's heartbeats.
        """
        body = {"runner_id": runner_id, "lines": list(lines)}
        self.api.call(
            "POST",
            f"/jobs/{job_id}/logs",
            body=body,
            idempotency_key=batch_key,
            retry_for=retry_for,
            timeout=retry_for,
        )

    def set_run(self, *, job_id: int, runner_id: int, run_id: int) -> JobPublic | None:
        """Record the run a job created or resumes; None if the service has no such route."""
        body = {"runner_id": runner_id, "run_id": run_id}
        try:
            return JobPublic.model_validate(self.api.send("POST", f"/jobs/{job_id}/run", body))
        except NotFoundError as exc:
            if str(exc) == "Not Found":  # FastAPI's answer for a route it does not have
                return None
            raise

    def finish(
        self,
        *,
        job_id: int,
        runner_id: int,
        status: str,
        failure_reason: str | None = None,
        run_id: int | None = None,
        retryable: bool = False,
        finish_key: str | None = None,
    ) -> JobPublic:
        """Record the job's outcome (a retryable failure with attempts left is re-queued).

        Sending it again later with the same `finish_key` is answered as the first was.
        """
        body: dict[str, Any] = {
            "runner_id": runner_id,
            "status": status,
            "failure_reason": failure_reason,
            "run_id": run_id,
            "retryable": retryable,
        }
        path = f"/jobs/{job_id}/finish"
        response = self.api.call("POST", path, body=body, idempotency_key=finish_key)
        return JobPublic.model_validate(response.json())
