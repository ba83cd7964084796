"""Runner routes: register and heartbeat (runner scope), list (read)."""

from __future__ import annotations

from fastapi import APIRouter

from service import queue
from service.api.auth import Reader, RunnerToken
from service.api.deps import ReadSession, WriteSession
from service.api.schemas import IdPath, RunnerHeartbeat
from service.models import RunnerCreate, RunnerPublic, RunnersPublic

router = APIRouter(prefix="/runners", tags=["runners"])


@router.post("", response_model=RunnerPublic)
def register_runner(runner_in: RunnerCreate, _: RunnerToken, session: WriteSession) -> RunnerPublic:
    """Register a runner; the same name again updates its labels and GPUs."""
    row = queue.register_runner(
        session=session, name=runner_in.name, labels=runner_in.labels, gpus=runner_in.gpus
    )
    return RunnerPublic.model_validate(row)


@router.post("/{runner_id}/heartbeat", response_model=RunnerPublic)
def runner_heartbeat(
    runner_id: IdPath, beat: RunnerHeartbeat, _: RunnerToken, session: WriteSession
) -> RunnerPublic:
    """Record that a runner is alive and which job it runs."""
    row = queue.runner_heartbeat(
        session=session, runner_id=runner_id, current_job_id=beat.current_job_id
    )
    return RunnerPublic.model_validate(row)


@router.get("", response_model=RunnersPublic)
def list_runners(_: Reader, session: ReadSession) -> RunnersPublic:
    """List runners by name (silent for over 60 s: offline)."""
    rows = queue.list_runners(session=session)
    return RunnersPublic(data=[RunnerPublic.model_validate(r) for r in rows], count=len(rows))
