"""Job routes: enqueue/cancel (write), list/get/logs (read), and the runner protocol.

A runner claims with `POST /jobs/claim` (long-poll: the server retries every
`CLAIM_POLL_S` for up to `wait` seconds, then answers 204), renews its lease with
`POST /jobs/{id}/heartbeat` (409 when it does not hold the lease), streams output with
`POST /jobs/{id}/logs` and reports with `POST /jobs/{id}/finish`. Every runner call
names a runner this token registered (403 for another token's, 404 for none), and leases
are capped at `server.max_lease_seconds` (a longer ask is shortened, not refused). Writes
honour `Idempotency-Key`: a retried enqueue, claim, finish or log batch has one effect.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Annotated, Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, HTTPException, Query, Request, Response

from service import crud
from service.api.auth import Reader, RunnerToken, Writer, check_runner
from service.api.deps import AppSettings, ReadSession, WriteSession
from service.api.schemas import (
    MAX_ID,
    ClaimRequest,
    FinishRequest,
    HeartbeatRequest,
    IdempotencyKey,
    IdPath,
    JobRunLink,
    Limit,
    LogLines,
    Offset,
)
from service.models import (
    JobCreate,
    JobLogPublic,
    JobLogsPublic,
    JobPublic,
    JobsPublic,
    JobStatus,
)

router = APIRouter(prefix="/jobs", tags=["jobs"])
#: Seconds between claim attempts while a long-poll waits for a job.
CLAIM_POLL_S = 0.5


@router.post("", status_code=201, response_model=JobPublic)
def enqueue_job(
    job_in: JobCreate,
    principal: Writer,
    session: WriteSession,
    idempotency_key: IdempotencyKey = None,
) -> JobPublic:
    """Queue a job (recording which token queued it); 422 if its spec does not load."""
    # Imported here: the spec loader validates evaluator configs through the evaluator
    # plugins, which the API does not load at start-up.
    from service.spec_loader import SpecError, load_spec_text

    try:  # the files it names are on the runners' machines: check the text, not the paths
        load_spec_text(job_in.spec_text, job_in.spec_path or "spec.yaml", check_files=False)
    except SpecError as err:
        raise HTTPException(422, detail="; ".join(str(err).splitlines())) from None
    job_in = job_in.model_copy(update={"created_by_token_id": principal.token_id})
    row = crud.enqueue_job(session=session, job_in=job_in, idempotency_key=idempotency_key)
    return JobPublic.model_validate(row)


@router.get("", response_model=JobsPublic)
def list_jobs(
    _: Reader,
    session: ReadSession,
    status: JobStatus | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> JobsPublic:
    """List jobs, newest first, optionally with one status."""
    rows, count = crud.list_jobs(session=session, status=status, limit=limit, offset=offset)
    return JobsPublic(data=[JobPublic.model_validate(r) for r in rows], count=count)


@router.post(
    "/claim",
    response_model=JobPublic,
    responses={204: {"description": "No job this runner can run (within `wait` seconds)."}},
)
async def claim_job(
    claim: ClaimRequest,
    principal: RunnerToken,
    session: WriteSession,
    settings: AppSettings,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Lease the oldest queued job this runner can run, waiting up to `wait` seconds.

    A retry with the `Idempotency-Key` of a claim that took a job returns that job while
    this runner holds it (the first answer was lost), instead of taking another.
    """
    await anyio.to_thread.run_sync(
        partial(check_runner, session=session, principal=principal, runner_id=claim.runner_id)
    )
    attempt = partial(
        _claim_once,
        session=session,
        runner_id=claim.runner_id,
        labels=claim.labels,
        gpus=claim.gpus,
        lease_seconds=min(claim.lease_seconds, settings.server.max_lease_seconds),
        claim_key=idempotency_key,
    )
    deadline = time.monotonic() + claim.wait
    while True:
        job = await anyio.to_thread.run_sync(attempt)
        if job is not None:
            return job
        left = deadline - time.monotonic()
        if left <= 0 or await request.is_disconnected():
            return Response(status_code=204)
        await anyio.sleep(min(CLAIM_POLL_S, left))


def _claim_once(**kwargs: Any) -> JobPublic | None:
    job = crud.claim_job(**kwargs)
    return None if job is None else JobPublic.model_validate(job)


@router.get("/{job_id}", response_model=JobPublic)
def get_job(job_id: IdPath, _: Reader, session: ReadSession) -> JobPublic:
    """Return a job."""
    return JobPublic.model_validate(crud.get_job(session=session, job_id=job_id))


@router.post("/{job_id}/cancel", response_model=JobPublic)
def cancel_job(job_id: IdPath, _: Writer, session: WriteSession) -> JobPublic:
    """Cancel a job: a queued one at once, a running one by asking its runner to stop."""
    return JobPublic.model_validate(crud.cancel_job(session=session, job_id=job_id))


@router.get("/{job_id}/logs", response_model=JobLogsPublic)
def job_logs(
    job_id: IdPath,
    _: Reader,
    session: ReadSession,
    after_id: Annotated[int, Query(ge=0, le=MAX_ID, description="Only lines after this id.")] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> JobLogsPublic:
    """Return a job's log lines after `after_id`, oldest first."""
    rows = crud.job_logs(session=session, job_id=job_id, after_id=after_id, limit=limit)
    return JobLogsPublic(data=[JobLogPublic.model_validate(r) for r in rows], count=len(rows))


@router.post("/{job_id}/logs", status_code=204, response_class=Response)
def append_job_logs(
    job_id: IdPath,
    logs: LogLines,
    principal: RunnerToken,
    session: WriteSession,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Append lines to the log of a job this runner holds (a retried batch: once)."""
    check_runner(session=session, principal=principal, runner_id=logs.runner_id)
    crud.append_job_logs(
        session=session,
        job_id=job_id,
        runner_id=logs.runner_id,
        lines=logs.lines,
        batch_key=idempotency_key,
    )
    return Response(status_code=204)


@router.post("/{job_id}/heartbeat", response_model=JobPublic)
def heartbeat_job(
    job_id: IdPath,
    beat: HeartbeatRequest,
    principal: RunnerToken,
    session: WriteSession,
    settings: AppSettings,
) -> JobPublic:
    """Renew the lease; `cancel_requested` in the answer tells the runner to stop."""
    check_runner(session=session, principal=principal, runner_id=beat.runner_id)
    row = crud.heartbeat_job(
        session=session,
        job_id=job_id,
        runner_id=beat.runner_id,
        lease_seconds=min(beat.lease_seconds, settings.server.max_lease_seconds),
    )
    return JobPublic.model_validate(row)


@router.post("/{job_id}/run", response_model=JobPublic)
def link_job_run(
    job_id: IdPath, link: JobRunLink, principal: RunnerToken, session: WriteSession
) -> JobPublic:
    """Record the run a job this runner holds created or resumes (so a retry resumes it)."""
    check_runner(session=session, principal=principal, runner_id=link.runner_id)
    row = crud.set_job_run(
        session=session, job_id=job_id, run_id=link.run_id, runner_id=link.runner_id
    )
    return JobPublic.model_validate(row)


@router.post("/{job_id}/finish", response_model=JobPublic)
def finish_job(
    job_id: IdPath,
    outcome: FinishRequest,
    principal: RunnerToken,
    session: WriteSession,
    idempotency_key: IdempotencyKey = None,
) -> JobPublic:
    """Record the outcome of a job this runner holds (a retried finish: the same answer)."""
    check_runner(session=session, principal=principal, runner_id=outcome.runner_id)
    row = crud.finish_job(
        session=session,
        job_id=job_id,
        runner_id=outcome.runner_id,
        status=outcome.status,
        failure_reason=outcome.failure_reason,
        run_id=outcome.run_id,
        retryable=outcome.retryable,
        finish_key=idempotency_key,
    )
    return JobPublic.model_validate(row)
