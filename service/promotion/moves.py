"""Moving an alias in both registries: evalctl's (the source of truth) and MLflow's.

Owns `move`, what every promotion and roll back calls whatever the transport, and
`move_alias`, the pair that every alias move made inside the service goes through (the
aliases API route, the dashboard's promote and roll back): register the checkpoint's MLflow model
version and point MLflow's alias at it (`service.mlflow_registry`, which checks the
checkpoint against the storage roots), then record the move in evalctl's registry. Moves
run one at a time in the process, so two concurrent moves cannot leave the registries
pointing at different checkpoints; if recording fails after MLflow moved, MLflow's alias
is put back where evalctl's points. A replay (an `Idempotency-Key` already recorded)
moves neither. Outside the service, `move` registers the MLflow version in the embedded
store first; through a `RemoteRegistry` the service mirrors its own MLflow alias.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlmodel import Session

from service import crud
from service.mlflow_registry import mirror_alias_move, register_promotion, restore_mlflow_alias
from service.models import AliasPublic
from service.settings import Settings, get_settings

if TYPE_CHECKING:
    from service.gate.refs import ResolvedRef

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


def move(
    *,
    registry: Any,
    experiment_id: int,
    experiment_name: str,
    name: str,
    target: ResolvedRef,
    actor: str,
    action: str = "promote",
    gate: dict[str, Any] | None = None,
    token_id: int | None = None,
    write_engine: Engine | None = None,
    settings: Settings | None = None,
) -> AliasPublic:
    """Move alias `name` to `target` in MLflow first, then in the registry; return the alias.

    Inside the service (`write_engine` given, `registry` local) this is `move_alias`. A
    `RemoteRegistry` records the move and the service mirrors its own MLflow alias
    (checked against its storage roots); an embedded registry registers the MLflow
    version in the local tracking store first.
    """
    from service.remote import RemoteRegistry

    if write_engine is not None:
        return move_alias(
            engine=registry.engine,
            write_engine=write_engine,
            settings=settings or get_settings(),
            experiment_id=experiment_id,
            name=name,
            checkpoint_id=target.checkpoint.id,
            actor=actor,
            action=action,
            gate=gate,
            token_id=token_id,
        )
    version = None
    if not isinstance(registry, RemoteRegistry):
        version = register_promotion(
            tracking_uri=(settings or get_settings()).tracking_uri,
            experiment=experiment_name,
            checkpoint=target.checkpoint,
            run=target.run,
            alias=name,
        )
    moved: AliasPublic = registry.set_alias(
        experiment_id=experiment_id,
        name=name,
        checkpoint_id=target.checkpoint.id,
        actor=actor,
        action=action,
        gate=gate,
        version=version,
    )
    return moved
