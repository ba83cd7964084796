"""Moving an alias in both registries: evalctl's (the source of truth) and MLflow's.

Owns the pair that every alias move made inside the service goes through (the aliases
API route, the dashboard's promote and roll back): register the checkpoint's MLflow model
version and point MLflow's alias at it (`service.mlflow_registry`, which checks the
checkpoint against the storage roots), then record the move in evalctl's registry. Moves
run one at a time in the process, so two concurrent moves cannot leave the registries
pointing at different checkpoints; if recording fails after MLflow moved, MLflow's alias
is put back where evalctl's points. A replay (an `Idempotency-Key` already recorded)
moves neither. Gate planning and judging stay with the callers for now.
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from service import crud
from service.mlflow_registry import mirror_alias_move, restore_mlflow_alias
from service.models import AliasPublic
from service.settings import Settings

#: One alias move at a time in this process. Replicas of the service on one database
#: would need a database lock here as well.
_MOVES = threading.Lock()


def move_alias(
    *,
    engine: Engine,
    write_engine: Engine,
    settings: Settings,
    experiment_id: int,
    name: str,
    checkpoint_id: int,
    actor: str,
    action: str = "promote",
    gate: dict[str, Any] | None = None,
    token_id: int | None = None,
    idempotency_key: str | None = None,
) -> AliasPublic:
    """Point alias `name` at a checkpoint in MLflow, then record the move; return the alias.

    Raises:
        EvalctlError: the checkpoint cannot be registered (outside the storage roots, not
            in the experiment, MLflow failed); nothing moved.
    """
    with _MOVES, Session(engine) as read:
        version = None
        replay = crud.alias_event_for_key(session=read, key=idempotency_key) is not None
        if not replay:
            version = mirror_alias_move(
                session=read,
                settings=settings,
                experiment_id=experiment_id,
                name=name,
                checkpoint_id=checkpoint_id,
            )
        try:
            with Session(write_engine) as session:
                row = crud.set_alias(
                    session=session,
                    experiment_id=experiment_id,
                    name=name,
                    checkpoint_id=checkpoint_id,
                    actor=actor,
                    action=action,
                    gate=gate,
                    version=version,
                    token_id=token_id,
                    idempotency_key=idempotency_key,
                )
                return AliasPublic.model_validate(row)
        except Exception:
            if not replay:
                restore_mlflow_alias(
                    session=read, settings=settings, experiment_id=experiment_id, name=name
                )
            raise
