"""Data access for runs: create (once per idempotency key), look up by id or name, update,
and list one page with filters."""

from __future__ import annotations

from sqlmodel import Session, col, select

from service.crud._common import count_rows, get_row, insert_once
from service.crud.experiments import get_experiment_by_name
from service.errors import EvalctlError, NotFoundError
from service.models import Checkpoint, Experiment, Run, RunCreate, RunStatus, RunUpdate


def create_run(*, session: Session, run_in: RunCreate, idempotency_key: str | None = None) -> Run:
    """Create a run in an existing experiment (once per `idempotency_key`)."""
    get_row(session, Experiment, run_in.experiment_id)
    expect = {"experiment_id": run_in.experiment_id, "name": run_in.name}
    expect["spec_hash"] = run_in.spec_hash

    def write() -> Run:
        run = Run.model_validate(run_in, update={"idempotency_key": idempotency_key})
        session.add(run)
        return run

    return insert_once(session=session, model=Run, key=idempotency_key, expect=expect, write=write)


def get_run(*, session: Session, run_id: int) -> Run:
    """Return a run by id."""
    return get_row(session, Run, run_id)


def find_run(*, session: Session, ref: str | int) -> Run:
    """Return a run by id, else the newest run named `ref`."""
    ref = str(ref).strip()
    if ref.isdigit():
        run = session.get(Run, int(ref))
        if run is not None:
            return run
    newest = (
        select(Run).where(Run.name == ref).order_by(col(Run.created_at).desc(), col(Run.id).desc())
    )
    run = session.exec(newest).first()
    if run is None:
        raise NotFoundError(f"run {ref} not found" if ref.isdigit() else f"run '{ref}' not found")
    return run


def update_run(*, session: Session, run_id: int, run_update: RunUpdate) -> Run:
    """Apply the fields set in `run_update` to a run."""
    run = get_row(session, Run, run_id)
    data = run_update.model_dump(exclude_unset=True)
    best = data.get("best_checkpoint_id")
    if best is not None:
        checkpoint = get_row(session, Checkpoint, best)
        if checkpoint.run_id != run_id:
            owner = checkpoint.run_id
            raise EvalctlError(f"checkpoint {best} belongs to run {owner}, not run {run_id}")
    run.sqlmodel_update(data)
    session.add(run)
    session.commit()
    session.refresh(run)
    return run


def list_runs(
    *,
    session: Session,
    experiment: str | None = None,
    status: RunStatus | str | None = None,
    limit: int | None = 100,
    offset: int = 0,
) -> tuple[list[Run], int]:
    """Return one page of runs, newest first, and how many match in all."""
    query = select(Run)
    if experiment is not None:
        experiment_id = get_experiment_by_name(session=session, name=experiment).id
        query = query.where(Run.experiment_id == experiment_id)
    if status is not None:
        query = query.where(Run.status == RunStatus(status))
    order = (col(Run.created_at).desc(), col(Run.id).desc())
    rows = session.exec(query.order_by(*order).offset(offset).limit(limit)).all()
    return list(rows), count_rows(session, query)
