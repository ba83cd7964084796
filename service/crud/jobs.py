"""Data access for the job queue with leases: enqueue, list, cancel, claim, heartbeat,
log and finish jobs; every SQL statement on `job` and `job_log`.

The queue delivers each job at least once. `claim_job` first re-queues jobs whose lease
expired, then takes the oldest queued job the runner can run (its labels include the job's,
it has enough GPUs). On Postgres the row is taken with `SELECT ... FOR UPDATE SKIP LOCKED`,
so concurrent claimers never wait on each other nor take the same row; on SQLite every
write runs under `BEGIN IMMEDIATE`, one writer at a time. A runner keeps its lease alive
with `heartbeat_job`; only the lease holder may heartbeat, log or finish a job. A lease
that has expired but was not yet re-queued is still the holder's: nobody else has the job.
A runner runs one job at a time: its claim while it holds a job returns that job (lease
renewed, no attempt counted), so a claim whose answer was lost for good strands nothing,
and registering again (the agent restarted, `service.crud.runners`) gives the jobs it held
back to the queue (`give_back_jobs`).

Retries are safe. A write that a remote client may send twice takes the request's
`Idempotency-Key` and stores it: `enqueue_job` on the job (a retry returns that job),
`claim_job` as the job's `claim_key` while the lease lasts (a retried claim by the same
runner gets the job it already holds, with no second attempt counted), `finish_job` as
`finish_key` (a retried finish returns the finished job instead of a lease error, until
the job's next claim clears the key) and `append_job_logs` on the batch's first line (a
retried batch adds nothing). This module does not open sessions or engines (`service.db`)
nor check scopes or runner identity (the API).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import bindparam, insert
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from service.crud._common import (
    IdempotencyKeyReused,
    begin_write,
    count_rows,
    get_locked,
    get_row,
    insert_once,
    locking,
)
from service.errors import EvalctlError, unknown_name
from service.models import Job, JobCreate, JobLog, JobStatus, Run, utcnow

#: Queued rows SQLite reads per batch while looking for one whose labels match.
_SCAN_BATCH = 100
#: Statuses `finish_job` may record.
_FINAL = tuple(status for status in JobStatus if status.final)


class LeaseError(EvalctlError):
    """The runner does not hold the job's lease (never did, or it expired and was re-queued)."""


# --- jobs: producer side ---------------------------------------------------------------


def enqueue_job(*, session: Session, job_in: JobCreate, idempotency_key: str | None = None) -> Job:
    """Queue a job (once per `idempotency_key`: a retry returns the job it queued)."""
    if job_in.run_id is not None:
        get_row(session, Run, job_in.run_id)
    fields = ("kind", "spec_text", "spec_path", "payload", "gpus", "labels", "max_attempts")
    expect = {name: getattr(job_in, name) for name in fields}

    def write() -> Job:
        job = Job.model_validate(job_in, update={"idempotency_key": idempotency_key})
        session.add(job)
        return job

    begin_write(session)
    return insert_once(session=session, model=Job, key=idempotency_key, expect=expect, write=write)


def get_job(*, session: Session, job_id: int) -> Job:
    """Return a job by id."""
    return get_row(session, Job, job_id)


def list_jobs(
    *, session: Session, status: str | None = None, limit: int | None = 100, offset: int = 0
) -> tuple[list[Job], int]:
    """Return one page of jobs, newest first, and how many match in all."""
    query = select(Job)
    if status is not None:
        if status not in list(JobStatus):
            raise EvalctlError(unknown_name("job status", status, list(JobStatus)))
        query = query.where(Job.status == status)
    order = (col(Job.created_at).desc(), col(Job.id).desc())
    rows = session.exec(query.order_by(*order).offset(offset).limit(limit)).all()
    return list(rows), count_rows(session, query)


def cancel_job(*, session: Session, job_id: int) -> Job:
    """Cancel a job: a queued one at once, a running one by asking its runner to stop."""
    begin_write(session)
    job = get_locked(session, Job, job_id)
    if job.status == JobStatus.queued:
        job.status, job.finished_at = JobStatus.cancelled, utcnow()
    elif job.status == JobStatus.running:
        job.cancel_requested = True
    elif job.status != JobStatus.cancelled:
        session.rollback()
        raise EvalctlError(f"job {job_id} already {job.status}; nothing to cancel")
    session.add(job)
    session.commit()
    session.refresh(job)
    return job


def set_job_run(*, session: Session, job_id: int, run_id: int, runner_id: int | None = None) -> Job:
    """Link a job to the run it created or resumes (only the lease holder, when given)."""
    get_row(session, Run, run_id)
    begin_write(session)
    if runner_id is not None:
        job = _leased(session, job_id=job_id, runner_id=runner_id)
    else:
        job = get_locked(session, Job, job_id)
    job.run_id = run_id
    session.add(job)
    session.commit()
    session.refresh(job)
    return job


def job_logs(
    *, session: Session, job_id: int, after_id: int = 0, limit: int = 1000
) -> list[JobLog]:
    """Return a job's log lines with id > `after_id`, in the order they were appended."""
    get_row(session, Job, job_id)
    query = (
        select(JobLog)
        .where(JobLog.job_id == job_id, col(JobLog.id) > after_id)
        .order_by(col(JobLog.id))
        .limit(limit)
    )
    return list(session.exec(query).all())


def requeue_expired(*, session: Session, now: datetime | None = None) -> int:
    """Re-queue running jobs whose lease expired (fail those out of attempts); return how many."""
    begin_write(session)
    try:
        count = _requeue_expired(session, now or utcnow())
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return count


# --- jobs: runner side -----------------------------------------------------------------


def claim_job(
    *,
    session: Session,
    runner_id: int,
    labels: Sequence[str],
    gpus: int,
    lease_seconds: float,
    claim_key: str | None = None,
) -> Job | None:
    """Lease the oldest queued job this runner can run; None when there is none.

    A runner runs one job at a time, so while it holds one (the answer of the claim that
    took it was lost, even after every retry) its claims get that job back, lease renewed
    and no attempt counted; a held job whose cancel was asked is cancelled instead. A
    `claim_key` that another runner's claim holds raises `IdempotencyKeyReused`.
    """
    if lease_seconds <= 0:
        raise ValueError(f"lease_seconds must be positive, not {lease_seconds}")
    for _ in range(2):
        now = utcnow()
        begin_write(session)
        try:
            job = _claimed(session, runner_id=runner_id, claim_key=claim_key)
            if job is None or job.cancel_requested:
                # Before re-queueing expired leases: one this runner holds is still its own.
                job = _held(session, runner_id=runner_id, now=now)
            if job is None:
                _requeue_expired(session, now)
                job = _pick(session, labels=list(labels), gpus=gpus)
                if job is None:
                    session.commit()
                    return None
                job.status = JobStatus.running
                job.lease_owner = job.runner_id = runner_id
                job.attempts += 1
                job.started_at = now
                job.claim_key = claim_key
                job.finish_key = None  # a new lease: the last one's finish is no answer to it
            job.lease_expires_at = now + timedelta(seconds=lease_seconds)
            session.add(job)
            session.commit()
        except IntegrityError:
            # A concurrent retry of this claim took a job first: look for it again.
            session.rollback()
            continue
        except BaseException:
            session.rollback()
            raise
        session.refresh(job)
        return job
    raise EvalctlError(f"could not claim a job for runner {runner_id}")


def heartbeat_job(*, session: Session, job_id: int, runner_id: int, lease_seconds: float) -> Job:
    """Renew a lease; the returned job's `cancel_requested` tells the runner to stop."""
    begin_write(session)
    job = _leased(session, job_id=job_id, runner_id=runner_id)
    job.lease_expires_at = utcnow() + timedelta(seconds=lease_seconds)
    session.add(job)
    session.commit()
    session.refresh(job)
    return job


def finish_job(
    *,
    session: Session,
    job_id: int,
    runner_id: int,
    status: str,
    failure_reason: str | None = None,
    run_id: int | None = None,
    retryable: bool = False,
    finish_key: str | None = None,
) -> Job:
    """Record a job's outcome; a retryable failure with attempts left goes back to the queue.

    A retry with the `finish_key` of the finish that ended the lease returns the job as
    that finish left it, instead of a lease error, until the job is claimed again: then
    the retry is a `LeaseError` naming the new holder, as any finish of an ended lease.
    """
    if status not in _FINAL:
        raise ValueError(f"status must be one of {', '.join(_FINAL)}, not {status!r}")
    if run_id is not None:
        get_row(session, Run, run_id)
    begin_write(session)
    if finish_key is not None:
        done: Job = get_locked(session, Job, job_id)
        if done.finish_key == finish_key:
            # This finish committed before and its answer was lost: answer again. The key
            # is cleared by the next claim, so `runner_id` is still the one that finished.
            if done.runner_id != runner_id:
                session.rollback()
                raise IdempotencyKeyReused(
                    f"Idempotency-Key '{finish_key}' finished job {job_id} for runner "
                    f"{done.runner_id}, not runner {runner_id}"
                )
            session.commit()
            return done
    job = _leased(session, job_id=job_id, runner_id=runner_id)
    if status == "failed" and retryable and job.attempts < job.max_attempts:
        job.status = JobStatus.queued
    else:
        job.status, job.finished_at = JobStatus(status), utcnow()
    job.failure_reason = failure_reason if status != "succeeded" else None
    job.lease_owner = job.lease_expires_at = job.claim_key = None
    job.finish_key = finish_key
    if run_id is not None:
        job.run_id = run_id
    session.add(job)
    session.commit()
    session.refresh(job)
    return job


def append_job_logs(
    *,
    session: Session,
    job_id: int,
    runner_id: int,
    lines: Sequence[str],
    batch_key: str | None = None,
) -> None:
    """Append log lines to a job the runner holds (a batch with a known key: nothing)."""
    begin_write(session)
    # A shared lock: the lease cannot be re-queued while these lines go in.
    _leased(session, job_id=job_id, runner_id=runner_id, shared=True)
    if not lines or _batch_known(session, batch_key):
        session.commit()
        return
    now = utcnow()
    rows = [
        {"job_id": job_id, "line": line, "created_at": now, "batch_key": None} for line in lines
    ]
    rows[0]["batch_key"] = batch_key
    try:
        session.exec(insert(JobLog), params=rows)
        session.commit()
    except IntegrityError:
        session.rollback()
        if not _batch_known(session, batch_key):  # not a concurrent retry of this batch
            raise


def give_back_jobs(session: Session, *, runner_id: int, why: str) -> None:
    """Release every job `runner_id` holds, inside the caller's transaction."""
    query = select(Job).where(Job.status == JobStatus.running, Job.lease_owner == runner_id)
    now = utcnow()
    for job in session.exec(locking(query)).all():
        _release(job, now, failure=f"{why} during attempt {job.attempts} of {job.max_attempts}")
        session.add(job)


# --- helpers ---------------------------------------------------------------------------


def _leased(session: Session, *, job_id: int, runner_id: int, shared: bool = False) -> Job:
    """Return the job, locked, if `runner_id` holds its lease; else roll back and raise."""
    job: Job = get_locked(session, Job, job_id, shared=shared)
    if job.status != JobStatus.running or job.lease_owner != runner_id:
        holder = f", leased to runner {job.lease_owner}" if job.lease_owner is not None else ""
        state = f"{job.status}{holder}"
        session.rollback()
        raise LeaseError(f"runner {runner_id} does not hold the lease on job {job_id} ({state})")
    return job


def _claimed(session: Session, *, runner_id: int, claim_key: str | None) -> Job | None:
    """Return, locked, the job an earlier claim with `claim_key` took, if this runner
    still holds it; a key another runner's claim used raises `IdempotencyKeyReused`."""
    if claim_key is None:
        return None
    query = select(Job).where(Job.claim_key == claim_key)
    job = session.exec(locking(query)).first()
    if job is None:
        return None
    if job.lease_owner != runner_id:
        raise IdempotencyKeyReused(
            f"Idempotency-Key '{claim_key}' claimed job {job.id} for runner {job.lease_owner}, "
            f"not runner {runner_id}"
        )
    return job


def _batch_known(session: Session, batch_key: str | None) -> bool:
    if batch_key is None:
        return False
    query = select(JobLog.id).where(JobLog.batch_key == batch_key)
    return session.exec(query).first() is not None


def _requeue_expired(session: Session, now: datetime) -> int:
    """Re-queue, fail or cancel running jobs whose lease expired, inside the caller's
    transaction; rows another transaction holds (a heartbeat in flight) are skipped."""
    query = (
        select(Job)
        .where(Job.status == JobStatus.running, col(Job.lease_expires_at) < now)
        .order_by(col(Job.id))
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    rows = session.exec(query).all()
    for job in rows:
        _release(job, now, failure=f"lease expired {job.attempts} times")
        session.add(job)
    session.flush()
    return len(rows)


def _release(job: Job, now: datetime, *, failure: str) -> None:
    """End a lease that its holder will not finish: cancel the job if that was asked,
    else queue it again, or fail it with `failure` when it is out of attempts."""
    job.lease_owner = job.lease_expires_at = job.claim_key = None
    if job.cancel_requested:
        job.status, job.finished_at = JobStatus.cancelled, now
    elif job.attempts < job.max_attempts:
        job.status = JobStatus.queued
    else:
        job.status, job.finished_at = JobStatus.failed, now
        job.failure_reason = failure


def _held(session: Session, *, runner_id: int, now: datetime) -> Job | None:
    """Return, locked, the job `runner_id` holds (its lease may have expired, if nobody
    re-queued it yet); a held job whose cancel was asked is cancelled, not returned."""
    query = (
        select(Job)
        .where(Job.status == JobStatus.running, Job.lease_owner == runner_id)
        .order_by(col(Job.id))
    )
    for job in session.exec(locking(query)).all():
        if not job.cancel_requested:
            return job
        _release(job, now, failure="cancelled")
        session.add(job)
    return None


def _pick(session: Session, *, labels: list[str], gpus: int) -> Job | None:
    """Lock and return the oldest queued job whose labels ⊆ `labels` and gpus ≤ `gpus`."""
    query = (
        select(Job)
        .where(Job.status == JobStatus.queued, col(Job.gpus) <= gpus)
        .order_by(col(Job.created_at), col(Job.id))
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    if session.get_bind().dialect.name == "postgresql":
        # jsonb containment in the WHERE clause: SKIP LOCKED then only locks a row it takes.
        have = bindparam("runner_labels", labels, type_=JSONB)
        return session.exec(query.where(col(Job.labels).op("<@")(have)).limit(1)).first()
    # SQLite: the write lock is ours, so scan in batches and match labels here.
    wanted = set(labels)
    offset = 0
    while True:
        batch = session.exec(query.offset(offset).limit(_SCAN_BATCH)).all()
        for job in batch:
            if set(job.labels) <= wanted:
                return job
        if len(batch) < _SCAN_BATCH:
            return None
        offset += _SCAN_BATCH
