"""Data access for runners: register (bound to the registering token), heartbeat, look up
and list them (a silent runner is listed as offline).

A runner is bound to the token that registered it (`runner.token_id`); the API refuses the
runner protocol for a runner id of another token (`service.api.auth.check_runner`).
Registering again (the agent restarted) gives the jobs the runner held back to the queue
(`service.crud.jobs.give_back_jobs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from service.crud._common import begin_write, get_locked, get_row, locking
from service.crud.jobs import give_back_jobs
from service.crud.tokens import active_token
from service.errors import EvalctlError, NotFoundError
from service.models import RUNNER_OFFLINE_AFTER_S, Job, Runner, RunnerCreate, RunnerStatus, utcnow


class RunnerNameTaken(EvalctlError):
    """A runner name is registered by another live token."""


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
        begin_write(session)
        query = select(Runner).where(Runner.name == name)
        row = session.exec(locking(query)).first()
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
        row.status, row.current_job_id, row.last_heartbeat_at = RunnerStatus.idle, None, utcnow()
        session.add(row)
        if row.id is not None:
            give_back_jobs(session, runner_id=row.id, why=f"runner {name} restarted")
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
        get_row(session, Job, current_job_id)
    begin_write(session)
    row = get_locked(session, Runner, runner_id)
    row.last_heartbeat_at = utcnow()
    row.current_job_id = current_job_id
    row.status = RunnerStatus.busy if current_job_id is not None else RunnerStatus.idle
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
            row.status = RunnerStatus.offline
    return rows
