"""The `alias` and `alias_event` tables: movable names (e.g. 'production') on a checkpoint
of an experiment, and every move of one (its history, with the gate summary when one ran).

Moving an alias in both registries (ours and MLflow's) is `service.promotion`'s job; this
module only describes the rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from service.models._common import JSONType, TZDateTime, idempotency_key_field, utcnow

#: What an alias event did; plain strings (not a DB enum) so new actions need no migration.
ALIAS_ACTIONS = ("promote", "rollback")


class AliasBase(SQLModel):
    """A movable name (e.g. 'production') pointing at one checkpoint of an experiment."""

    experiment_id: int = Field(foreign_key="experiment.id", index=True)
    name: str = Field(max_length=100, description="Alias name, e.g. 'production'.")
    checkpoint_id: int = Field(foreign_key="checkpoint.id")
    version: int | None = Field(default=None, description="MLflow registered model version.")


class AliasCreate(AliasBase):
    pass


class Alias(AliasBase, table=True):
    __table_args__ = (UniqueConstraint("experiment_id", "name", name="uq_alias_name"),)
    id: int | None = Field(default=None, primary_key=True)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=TZDateTime)


class AliasPublic(AliasBase):
    id: int
    updated_at: datetime


class AliasesPublic(SQLModel):
    data: list[AliasPublic]
    count: int


class AliasEventBase(SQLModel):
    """One move of an alias (its history); `gate` holds the gate summary when one ran."""

    experiment_id: int = Field(foreign_key="experiment.id", index=True)
    name: str = Field(max_length=100)
    checkpoint_id: int = Field(foreign_key="checkpoint.id")
    previous_checkpoint_id: int | None = Field(default=None, foreign_key="checkpoint.id")
    version: int | None = None
    action: str = Field(max_length=16, description="'promote' or 'rollback'.")
    actor: str = Field(max_length=200, description="EVALCTL_ACTOR, else the OS user.")
    token_id: int | None = Field(default=None, description="The API token used, if any.")
    gate: dict[str, Any] | None = Field(default=None, sa_type=JSONType)


class AliasEventCreate(AliasEventBase):
    pass


class AliasEvent(AliasEventBase, table=True):
    __tablename__ = "alias_event"
    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str | None = idempotency_key_field("Key of the request that moved it.")
    created_at: datetime = Field(default_factory=utcnow, sa_type=TZDateTime, index=True)


class AliasEventPublic(AliasEventBase):
    id: int
    created_at: datetime


class AliasEventsPublic(SQLModel):
    data: list[AliasEventPublic]
    count: int
