"""Reads for the jobs page: a filtered page of jobs with their run and runner names,
counts per status, and one job with its newest log lines.

Only the joins and filters the API has no call for live here; the page takes the runners
(with the API's idle/busy/offline status) straight from `service.crud.list_runners`, and
cancels through `service.crud.cancel_job`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from service import crud
from service.models import Job, JobLog, JobStatus, Run, Runner

#: Jobs per page of the jobs table.
PAGE_SIZE = 50
#: Log lines shown on a job's page (the newest ones).
LOG_TAIL = 500


@dataclass
class JobRow:
    """A job with the names its table row links to."""

    job: Job
    run_name: str | None
    runner_name: str | None


@dataclass
class JobLogTail:
    """The newest log lines of a job (oldest first) and how many it has in all."""

    lines: list[JobLog]
    total: int


def list_jobs(
    *,
    session: Session,
    status: str | None = None,
    kind: str | None = None,
    limit: int = PAGE_SIZE,
    offset: int = 0,
) -> tuple[list[JobRow], int]:
    """Return one page of jobs, newest first, and how many match in all."""
    lessee = aliased(Runner)
    query = (
        select(Job, Run.name, lessee.name)
        .outerjoin(Run, col(Run.id) == Job.run_id)
        .outerjoin(lessee, col(lessee.id) == Job.runner_id)
    )
    counted = select(func.count()).select_from(Job)
    if status is not None:
        query, counted = query.where(Job.status == status), counted.where(Job.status == status)
    if kind is not None:
        query, counted = query.where(Job.kind == kind), counted.where(Job.kind == kind)
    query = query.order_by(col(Job.created_at).desc(), col(Job.id).desc())
    rows = session.exec(query.offset(offset).limit(limit)).all()
    page = [JobRow(job=job, run_name=run, runner_name=runner) for job, run, runner in rows]
    return page, session.exec(counted).one()


def status_counts(*, session: Session) -> dict[str, int]:
    """Return how many jobs have each status (every status, zero included)."""
    query = select(Job.status, func.count()).group_by(Job.status)
    found = dict(session.exec(query).all())
    return {status: found.get(status, 0) for status in JobStatus}


def get_job(*, session: Session, job_id: int) -> JobRow:
    """Return a job with its run's and runner's names; NotFoundError if unknown."""
    job = crud.get_job(session=session, job_id=job_id)
    run = session.get(Run, job.run_id) if job.run_id is not None else None
    runner = session.get(Runner, job.runner_id) if job.runner_id is not None else None
    return JobRow(
        job=job,
        run_name=run.name if run else None,
        runner_name=runner.name if runner else None,
    )


def log_tail(*, session: Session, job_id: int, limit: int = LOG_TAIL) -> JobLogTail:
    """Return a job's newest `limit` log lines, oldest first, and its line count."""
    query = (
        select(JobLog).where(JobLog.job_id == job_id).order_by(col(JobLog.id).desc()).limit(limit)
    )
    lines = list(reversed(session.exec(query).all()))
    total = session.exec(
        select(func.count()).select_from(JobLog).where(JobLog.job_id == job_id)
    ).one()
    return JobLogTail(lines=lines, total=total)
