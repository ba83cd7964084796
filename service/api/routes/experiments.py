"""Experiment routes: list, get by name, get-or-create."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from service import crud
from service.api.auth import Reader, Reporter
from service.api.deps import ReadSession, WriteSession
from service.models import ExperimentCreate, ExperimentPublic, ExperimentsPublic

router = APIRouter(prefix="/experiments", tags=["experiments"])


@router.get("", response_model=ExperimentsPublic)
def list_experiments(_: Reader, session: ReadSession) -> ExperimentsPublic:
    """List all experiments by name."""
    rows = crud.list_experiments(session=session)
    return ExperimentsPublic(
        data=[ExperimentPublic.model_validate(r) for r in rows], count=len(rows)
    )


@router.post("", response_model=ExperimentPublic)
def get_or_create_experiment(
    experiment_in: ExperimentCreate, _: Reporter, session: WriteSession
) -> ExperimentPublic:
    """Return the experiment with this name, creating it if needed."""
    row = crud.get_or_create_experiment(session=session, name=experiment_in.name)
    return ExperimentPublic.model_validate(row)


@router.get("/{name}", response_model=ExperimentPublic)
def get_experiment(
    name: Annotated[str, Path(min_length=1, max_length=200)], _: Reader, session: ReadSession
) -> ExperimentPublic:
    """Return the experiment called `name`."""
    return ExperimentPublic.model_validate(crud.get_experiment_by_name(session=session, name=name))
