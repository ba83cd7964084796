"""Runner routes: register and heartbeat (runner scope), list (read).

Registering binds the runner to the calling token: the same name from another live token
is a 409, and only the binding token may heartbeat as the runner (403 otherwise).
"""

from __future__ import annotations

from fastapi import APIRouter

from service import crud
from service.api.auth import Reader, RunnerToken, check_runner
from service.api.deps import ReadSession, WriteSession
from service.api.schemas import IdPath, RunnerHeartbeat
from service.models import RunnerCreate, RunnerPublic, RunnersPublic

router = APIRouter(prefix="/runners", tags=["runners"])


@router.post("", response_model=RunnerPublic)
def register_runner(
    runner_in: RunnerCreate, principal: RunnerToken, session: WriteSession
) -> RunnerPublic:
    """Register a runner bound to this token; the same name again updates it."""
    row = crud.register_runner(
        session=session,
        name=runner_in.name,
        labels=runner_in.labels,
        gpus=runner_in.gpus,
        token_id=principal.token_id,
    )
    return RunnerPublic.model_validate(row)


@router.post("/{runner_id}/heartbeat", response_model=RunnerPublic)
def runner_heartbeat(
    runner_id: IdPath, beat: RunnerHeartbeat, principal: RunnerToken, session: WriteSession
) -> RunnerPublic:
    """Record that a runner this token registered is alive and which job it runs."""
    check_runner(session=session, principal=principal, runner_id=runner_id)
    row = crud.runner_heartbeat(
        session=session, runner_id=runner_id, current_job_id=beat.current_job_id
    )
    return RunnerPublic.model_validate(row)


@router.get("", response_model=RunnersPublic)
def list_runners(_: Reader, session: ReadSession) -> RunnersPublic:
    """List runners by name (silent for over 60 s: offline)."""
    rows = crud.list_runners(session=session)
    return RunnersPublic(data=[RunnerPublic.model_validate(r) for r in rows], count=len(rows))
