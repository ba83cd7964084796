"""Run routes: create, list (filters, paging), get by id or name, update, list checkpoints.

Creating honours `Idempotency-Key`: a retried create returns the run the first try made.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from service import crud
from service.api.auth import Reader, Reporter
from service.api.deps import ReadSession, WriteSession
from service.api.schemas import IdempotencyKey, IdPath, Limit, Offset
from service.models import (
    CheckpointPublic,
    CheckpointsPublic,
    RunCreate,
    RunPublic,
    RunsPublic,
    RunStatus,
    RunUpdate,
)

router = APIRouter(prefix="/runs", tags=["runs"])


@router.post("", status_code=201, response_model=RunPublic)
def create_run(
    run_in: RunCreate, _: Reporter, session: WriteSession, idempotency_key: IdempotencyKey = None
) -> RunPublic:
    """Create a run in an existing experiment (once per `Idempotency-Key`)."""
    row = crud.create_run(session=session, run_in=run_in, idempotency_key=idempotency_key)
    return RunPublic.model_validate(row)


@router.get("", response_model=RunsPublic)
def list_runs(
    _: Reader,
    session: ReadSession,
    experiment: Annotated[str | None, Query(max_length=200)] = None,
    status: RunStatus | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> RunsPublic:
    """List runs, newest first, optionally of one experiment and/or status."""
    rows, count = crud.list_runs(
        session=session, experiment=experiment, status=status, limit=limit, offset=offset
    )
    return RunsPublic(data=[RunPublic.model_validate(r) for r in rows], count=count)


@router.get("/{ref}", response_model=RunPublic)
def get_run(
    ref: Annotated[str, Path(min_length=1, max_length=200, description="Run id or name.")],
    _: Reader,
    session: ReadSession,
) -> RunPublic:
    """Return a run by id, else the newest run with that name."""
    return RunPublic.model_validate(crud.find_run(session=session, ref=ref))


@router.patch("/{run_id}", response_model=RunPublic)
def update_run(
    run_id: IdPath, run_update: RunUpdate, _: Reporter, session: WriteSession
) -> RunPublic:
    """Apply the fields set in the body to a run."""
    row = crud.update_run(session=session, run_id=run_id, run_update=run_update)
    return RunPublic.model_validate(row)


@router.get("/{run_id}/checkpoints", response_model=CheckpointsPublic)
def list_checkpoints(run_id: IdPath, _: Reader, session: ReadSession) -> CheckpointsPublic:
    """List a run's checkpoints by step."""
    rows = crud.list_checkpoints(session=session, run_id=run_id)
    return CheckpointsPublic(
        data=[CheckpointPublic.model_validate(r) for r in rows], count=len(rows)
    )
