"""The `experiment` table: a named group of runs (one spec's `name`)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from service.models._common import TZDateTime, utcnow


class ExperimentBase(SQLModel):
    name: str = Field(index=True, unique=True, max_length=200)


class ExperimentCreate(ExperimentBase):
    pass


class Experiment(ExperimentBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=TZDateTime)


class ExperimentPublic(ExperimentBase):
    id: int
    created_at: datetime


class ExperimentsPublic(SQLModel):
    data: list[ExperimentPublic]
    count: int
