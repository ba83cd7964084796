"""Data access for the control plane: API tokens, the job queue with leases, and runners.

Every SQL statement on `api_token`, `job`, `job_log` and `runner` lives here (the registry's
tables stay in `service.crud`). Functions take keyword-only arguments and a SQLModel
`Session`, return table rows and commit their own writes (one call, one transaction).

The queue delivers each job at least once. `claim_job` first re-queues jobs whose lease
expired, then takes the oldest queued job the runner can run (its labels include the job's,
it has enough GPUs). On Postgres the row is taken with `SELECT ... FOR UPDATE SKIP LOCKED`,
so concurrent claimers never wait on each other nor take the same row; on SQLite every
write runs under `BEGIN IMMEDIATE`, one writer at a time. A runner keeps its lease alive
with `heartbeat_job`; only the lease holder may heartbeat, log or finish a job. A lease
that has expired but was not yet re-queued is still the holder's: nobody else has the job.
A runner runs one job at a time: its claim while it holds a job returns that job (lease
renewed, no attempt counted), so a claim whose answer was lost for good strands nothing,
and registering again (the agent restarted) gives the jobs it held back to the queue.

Retries are safe. A write that a remote client may send twice takes the request's
`Idempotency-Key` and stores it: `enqueue_job` on the job (a retry returns that job),
`claim_job` as the job's `claim_key` while the lease lasts (a retried claim by the same
runner gets the job it already holds, with no second attempt counted), `finish_job` as
`finish_key` (a retried finish returns the finished job instead of a lease error, until
the job's next claim clears the key) and `append_job_logs` on the batch's first line (a
retried batch adds nothing). A runner is bound to the token that registered it
(`runner.token_id`); the API refuses the runner protocol for a runner id of another
token (`service.api.auth.check_runner`).
This module does not open sessions or engines (`service.db`) nor check scopes (the API).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, or_, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from service.crud import IdempotencyKeyReused, insert_once
from service.db import IMMEDIATE
from service.errors import EvalctlError, NotFoundError, unknown_name
from service.models import (
    JOB_FINAL_STATUSES,
    JOB_STATUSES,
    RUNNER_OFFLINE_AFTER_S,
    TOKEN_PREFIX_LEN,
    TOKEN_SCOPES,
    ApiToken,
    ApiTokenCreate,
    Job,
    JobCreate,
    JobLog,
    Run,
    Runner,
    RunnerCreate,
    utcnow,
)

#: Every plain token starts with this, so secret scanners and users can recognise one.
TOKEN_PREFIX = "evk_"
#: `last_used_at` is written at most this often per token (not on every request).
LAST_USED_RESOLUTION = timedelta(seconds=60)
#: Queued rows SQLite reads per batch while looking for one whose labels match.
_SCAN_BATCH = 100


class LeaseError(EvalctlError):
    """The runner does not hold the job's lease (never did, or it expired and was re-queued)."""


class RunnerNameTaken(EvalctlError):
    """A runner name is registered by another live token."""


# --- tokens ----------------------------------------------------------------------------


def hash_token(plain: str) -> str:
    """Return the sha256 hex digest stored for a plain token."""
    return hashlib.sha256(plain.encode("utf-8")).hexdigest()


def create_token(
    *, session: Session, name: str, scopes: Sequence[str], expires_at: datetime | None = None
) -> tuple[str, ApiToken]:
    """Create a token; return the plain token (shown once, never stored) and its row."""
    for scope in scopes:
        if scope not in TOKEN_SCOPES:
            raise EvalctlError(unknown_name("scope", scope, TOKEN_SCOPES))
    if not scopes:
        raise EvalctlError(f"a token needs at least one scope: {', '.join(TOKEN_SCOPES)}")
    if expires_at is not None and expires_at.utcoffset() is None:
        raise EvalctlError("expires_at must be timezone-aware")
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token_in = ApiTokenCreate(name=name, scopes=list(scopes), expires_at=expires_at)
    row = ApiToken.model_validate(
        token_in, update={"prefix": plain[:TOKEN_PREFIX_LEN], "token_hash": hash_token(plain)}
    )
    _begin_write(session)
    session.add(row)
    session.commit()
    session.refresh(row)
    return plain, row


def authenticate_token(*, session: Session, plain: str) -> ApiToken | None:
    """Return the live token matching `plain` (None if unknown, revoked or expired)."""
    if not plain:
        return None
    query = select(ApiToken).where(ApiToken.token_hash == hash_token(plain))
    row = session.exec(query).first()
    now = utcnow()
    if row is None or row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        stale = or_(
            col(ApiToken.last_used_at).is_(None),
            col(ApiToken.last_used_at) < now - LAST_USED_RESOLUTION,
        )
        _begin_write(session)
        # Conditional, so concurrent requests with one token write it once.
        session.exec(
            update(ApiToken).where(col(ApiToken.id) == row.id, stale).values(last_used_at=now)
        )
        session.commit()
        session.refresh(row)
    return row


def active_token(*, session: Session, token_id: int) -> ApiToken | None:
    """Return the token with this id if it is neither revoked nor expired."""
    row = session.get(ApiToken, token_id)
    if row is None or row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= utcnow():
        return None
    return row


def list_tokens(*, session: Session) -> list[ApiToken]:
    """List all tokens (revoked and expired ones too), oldest first."""
    return list(session.exec(select(ApiToken).order_by(col(ApiToken.id))).all())


def revoke_token(*, session: Session, token_id: int) -> ApiToken:
    """Revoke a token (it stops authenticating at once); revoking twice keeps the first time."""
    _begin_write(session)
    row = _get_locked(session, ApiToken, token_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.add(row)
    session.commit()
    session.refresh(row)
    return row


def count_tokens(*, session: Session, active_only: bool = False) -> int:
    """Count tokens; with `active_only`, only those neither revoked nor expired."""
    query = select(func.count()).select_from(ApiToken)
    if active_only:
        query = query.where(
            col(ApiToken.revoked_at).is_(None),
            or_(col(ApiToken.expires_at).is_(None), col(ApiToken.expires_at) > utcnow()),
        )
    return session.exec(query).one()


# --- jobs: producer side ---------------------------------------------------------------


def enqueue_job(*, session: Session, job_in: JobCreate, idempotency_key: str | None = None) -> Job:
    """Queue a job (once per `idempotency_key`: a retry returns the job it queued)."""
    if job_in.run_id is not None:
        _get(session, Run, job_in.run_id)
    fields = ("kind", "spec_text", "spec_path", "payload", "gpus", "labels", "max_attempts")
    expect = {name: getattr(job_in, name) for name in fields}

    def write() -> Job:
        job = Job.model_validate(job_in, update={"idempotency_key": idempotency_key})
        session.add(job)
        return job

    _begin_write(session)
    return insert_once(session=session, model=Job, key=idempotency_key, expect=expect, write=write)


def get_job(*, session: Session, job_id: int) -> Job:
    """Return a job by id."""
    return _get(session, Job, job_id)


def list_jobs(
    *, session: Session, status: str | None = None, limit: int | None = 100, offset: int = 0
) -> tuple[list[Job], int]:
    """Return one page of jobs, newest first, and how many match in all."""
    query = select(Job)
    if status is not None:
        if status not in JOB_STATUSES:
            raise EvalctlError(unknown_name("job status", status, JOB_STATUSES))
        query = query.where(Job.status == status)
    order = (col(Job.created_at).desc(), col(Job.id).desc())
    rows = session.exec(query.order_by(*order).offset(offset).limit(limit)).all()
    count = session.exec(select(func.count()).select_from(query.subquery())).one()
    return list(rows), count


def cancel_job(*, session: Session, job_id: int) -> Job:
    """Cancel a job: a queued one at once, a running one by asking its runner to stop."""
    _begin_write(session)
    job = _get_locked(session, Job, job_id)
    if job.status == "queued":
        job.status, job.finished_at = "cancelled", utcnow()
    elif job.status == "running":
        job.cancel_requested = True
    elif job.status != "cancelled":
        session.rollback()
        raise EvalctlError(f"job {job_id} already {job.status}; nothing to cancel")
    session.add(job)
    session.commit()
    session.refresh(job)
    return job


def set_job_run(*, session: Session, job_id: int, run_id: int, runner_id: int | None = None) -> Job:
    """Link a job to the run it created or resumes (only the lease holder, when given)."""
    _get(session, Run, run_id)
    _begin_write(session)
    if runner_id is not None:
        job = _leased(session, job_id=job_id, runner_id=runner_id)
    else:
        job = _get_locked(session, Job, job_id)
    job.run_id = run_id
    session.add(job)
    session.commit()
    session.refresh(job)
    return job


def job_logs(
    *, session: Session, job_id: int, after_id: int = 0, limit: int = 1000
) -> list[JobLog]:
    """Return a job's log lines with id > `after_id`, in the order they were appended."""
    _get(session, Job, job_id)
    query = (
        select(JobLog)
        .where(JobLog.job_id == job_id, col(JobLog.id) > after_id)
        .order_by(col(JobLog.id))
        .limit(limit)
    )
    return list(session.exec(query).all())


def requeue_expired(*, session: Session, now: datetime | None = None) -> int:
    """Re-queue running jobs whose lease expired (fail those out of attempts); return how many."""
    _begin_write(session)
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
        _begin_write(session)
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
                job.status = "running"
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
    _begin_write(session)
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
    if status not in JOB_FINAL_STATUSES:
        raise ValueError(f"status must be one of {', '.join(JOB_FINAL_STATUSES)}, not {status!r}")
    if run_id is not None:
        _get(session, Run, run_id)
    _begin_write(session)
    if finish_key is not None:
        done: Job = _get_locked(session, Job, job_id)
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
        job.status = "queued"
    else:
        job.status, job.finished_at = status, utcnow()
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
    _begin_write(session)
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


# --- runners ---------------------------------------------------------------------------


def register_runner(
    *,
    session: Session,
    name: str,
    labels: Sequence[str],
    gpus: int,
    token_id: int | None = None,
) -> Runner:
    """Register a runner; registering a known name again updates its labels and GPUs.

    An agent registers when it starts, before it runs anything: jobs its runner still
    holds (the agent died or restarted) are given back at once, as an expired lease is
    (re-queued; failed when out of attempts; cancelled if asked), not left to expire.
    With `token_id`, the runner is bound to that token: a name another live token
    registered is refused (`RunnerNameTaken`); one bound to a revoked or expired token,
    or to none (registered before runners were bound), is taken over.
    """
    runner_in = RunnerCreate(name=name, labels=list(labels), gpus=gpus)
    for _ in range(2):
        _begin_write(session)
        query = select(Runner).where(Runner.name == name)
        row = session.exec(_locking(query)).first()
        if row is None:
            row = Runner.model_validate(runner_in)
        if token_id is not None and row.token_id != token_id:
            if row.token_id is not None and active_token(session=session, token_id=row.token_id):
                session.rollback()
                raise RunnerNameTaken(
                    f"runner name '{name}' is registered by another token (id {row.token_id}); "
                    "start this runner with that token or under another --name"
                )
            row.token_id = token_id
        row.sqlmodel_update({"labels": runner_in.labels, "gpus": runner_in.gpus})
        row.status, row.current_job_id, row.last_heartbeat_at = "idle", None, utcnow()
        session.add(row)
        if row.id is not None:
            _give_back(session, runner_id=row.id, why=f"runner {name} restarted")
        try:
            session.commit()
        except IntegrityError:
            # A concurrent first registration of this name won; update its row instead.
            session.rollback()
            continue
        session.refresh(row)
        return row
    raise EvalctlError(f"could not register runner '{name}'")


def runner_heartbeat(
    *, session: Session, runner_id: int, current_job_id: int | None = None
) -> Runner:
    """Record that a runner is alive, and which job it is running (None: idle)."""
    if current_job_id is not None:
        _get(session, Job, current_job_id)
    _begin_write(session)
    row = _get_locked(session, Runner, runner_id)
    row.last_heartbeat_at = utcnow()
    row.current_job_id = current_job_id
    row.status = "busy" if current_job_id is not None else "idle"
    session.add(row)
    session.commit()
    session.refresh(row)
    return row


def get_runner(*, session: Session, runner_id: int) -> Runner:
    """Return a runner by id (NotFoundError saying to register it, if none)."""
    row = session.get(Runner, runner_id)
    if row is None:
        raise NotFoundError(f"runner {runner_id} not found; register it first (POST /runners)")
    return row


def list_runners(*, session: Session) -> list[Runner]:
    """List runners by name; one silent for over 60 s is listed as offline."""
    rows = list(session.exec(select(Runner).order_by(col(Runner.name))).all())
    cutoff = utcnow() - timedelta(seconds=RUNNER_OFFLINE_AFTER_S)
    for row in rows:
        # Detached, so the computed status is shown but never written back.
        session.expunge(row)
        if row.last_heartbeat_at < cutoff:
            row.status = "offline"
    return rows


# --- helpers ---------------------------------------------------------------------------


def _begin_write(session: Session) -> None:
    """Make sure the session's transaction may write; on SQLite, under `BEGIN IMMEDIATE`.

    A deferred SQLite transaction that read first cannot always upgrade to a write (another
    writer may have committed in between); so an open one is ended and an immediate one
    begun, which waits for the write lock up front. Postgres needs nothing: rows are locked.
    """
    if session.get_bind().dialect.name != "sqlite":
        return
    if session.in_transaction():
        if session.connection().get_execution_options().get("sqlite_begin") == "IMMEDIATE":
            return
        session.commit()
    session.connection(execution_options=IMMEDIATE)


def _locking(query: SelectOfScalar[Any], *, shared: bool = False) -> SelectOfScalar[Any]:
    # populate_existing: rows already in the session are refreshed from the locked read.
    return query.with_for_update(read=shared).execution_options(populate_existing=True)


def _get(session: Session, model: type[Any], row_id: int) -> Any:
    row = session.get(model, row_id)
    if row is None:
        raise NotFoundError(f"{_noun(model)} {row_id} not found")
    return row


def _get_locked(session: Session, model: Any, row_id: int, *, shared: bool = False) -> Any:
    query = select(model).where(model.id == row_id)
    row = session.exec(_locking(query, shared=shared)).first()
    if row is None:
        session.rollback()
        raise NotFoundError(f"{_noun(model)} {row_id} not found")
    return row


def _noun(model: type[Any]) -> str:
    return str(getattr(model, "__tablename__", model.__name__.lower())).replace("_", " ")


def _leased(session: Session, *, job_id: int, runner_id: int, shared: bool = False) -> Job:
    """Return the job, locked, if `runner_id` holds its lease; else roll back and raise."""
    job: Job = _get_locked(session, Job, job_id, shared=shared)
    if job.status != "running" or job.lease_owner != runner_id:
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
    job = session.exec(_locking(query)).first()
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
        .where(Job.status == "running", col(Job.lease_expires_at) < now)
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
        job.status, job.finished_at = "cancelled", now
    elif job.attempts < job.max_attempts:
        job.status = "queued"
    else:
        job.status, job.finished_at = "failed", now
        job.failure_reason = failure


def _held(session: Session, *, runner_id: int, now: datetime) -> Job | None:
    """Return, locked, the job `runner_id` holds (its lease may have expired, if nobody
    re-queued it yet); a held job whose cancel was asked is cancelled, not returned."""
    query = (
        select(Job)
        .where(Job.status == "running", Job.lease_owner == runner_id)
        .order_by(col(Job.id))
    )
    for job in session.exec(_locking(query)).all():
        if not job.cancel_requested:
            return job
        _release(job, now, failure="cancelled")
        session.add(job)
    return None


def _give_back(session: Session, *, runner_id: int, why: str) -> None:
    """Release every job `runner_id` holds, inside the caller's transaction."""
    query = select(Job).where(Job.status == "running", Job.lease_owner == runner_id)
    now = utcnow()
    for job in session.exec(_locking(query)).all():
        _release(job, now, failure=f"{why} during attempt {job.attempts} of {job.max_attempts}")
        session.add(job)


def _pick(session: Session, *, labels: list[str], gpus: int) -> Job | None:
    """Lock and return the oldest queued job whose labels ⊆ `labels` and gpus ≤ `gpus`."""
    query = (
        select(Job)
        .where(Job.status == "queued", col(Job.gpus) <= gpus)
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
