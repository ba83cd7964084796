"""Alias routes: move an alias (write), get one, list them, show one's history.

A move goes through `service.promotion.move_alias`: the service's own MLflow Model Registry
first (the checkpoint's model version, checked against the storage roots, then the alias),
then evalctl's registry, so the two agree whoever moves it; the `version` a client sends is
ignored. A move honours `Idempotency-Key`: a retried move records one event, not two, and
moves nothing.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from service import crud
from service.api.auth import Reader, Writer
from service.api.deps import AppSettings, ReadSession
from service.api.schemas import AliasName, AliasSet, IdempotencyKey, IdPath, IdQuery
from service.models import AliasesPublic, AliasEventPublic, AliasEventsPublic, AliasPublic
from service.promotion import move_alias

router = APIRouter(prefix="/aliases", tags=["aliases"])


@router.get("", response_model=AliasesPublic)
def list_aliases(_: Reader, session: ReadSession, experiment_id: IdQuery = None) -> AliasesPublic:
    """List aliases of one experiment, or of all, by experiment and name."""
    rows = crud.list_aliases(session=session, experiment_id=experiment_id)
    return AliasesPublic(data=[AliasPublic.model_validate(r) for r in rows], count=len(rows))


@router.put("/{experiment_id}/{name}", response_model=AliasPublic)
def set_alias(
    experiment_id: IdPath,
    name: AliasName,
    alias_in: AliasSet,
    principal: Writer,
    request: Request,
    settings: AppSettings,
    idempotency_key: IdempotencyKey = None,
) -> AliasPublic:
    """Point an alias at a checkpoint, in MLflow too, and record the move (and token), once."""
    return move_alias(
        engine=request.app.state.engine,
        write_engine=request.app.state.write_engine,
        settings=settings,
        experiment_id=experiment_id,
        name=name,
        checkpoint_id=alias_in.checkpoint_id,
        actor=alias_in.actor,
        action=alias_in.action,
        gate=alias_in.gate,
        token_id=principal.token_id,
        idempotency_key=idempotency_key,
    )


@router.get("/{experiment_id}/{name}", response_model=AliasPublic)
def get_alias(
    experiment_id: IdPath, name: AliasName, _: Reader, session: ReadSession
) -> AliasPublic:
    """Return an experiment's alias."""
    row = crud.get_alias(session=session, experiment_id=experiment_id, name=name)
    return AliasPublic.model_validate(row)


@router.get("/{experiment_id}/{name}/history", response_model=AliasEventsPublic)
def alias_history(
    experiment_id: IdPath, name: AliasName, _: Reader, session: ReadSession
) -> AliasEventsPublic:
    """List an alias's moves, newest first."""
    rows = crud.alias_history(session=session, experiment_id=experiment_id, name=name)
    return AliasEventsPublic(
        data=[AliasEventPublic.model_validate(r) for r in rows], count=len(rows)
    )
