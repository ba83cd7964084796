"""The `evaluation` and `eval_example` tables: one evaluator's metrics on a checkpoint, and
the per-example scores behind them (the unit the gate pairs on)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlmodel import Field, SQLModel

from service.models._common import JSONType, TZDateTime, idempotency_key_field, utcnow


class EvaluationStatus(StrEnum):
    succeeded = "succeeded"
    failed = "failed"


class EvaluationBase(SQLModel):
    checkpoint_id: int = Field(foreign_key="checkpoint.id", index=True)
    evaluator: str = Field(index=True, max_length=100)
    config_hash: str = Field(max_length=64)
    status: EvaluationStatus = Field(default=EvaluationStatus.succeeded, max_length=16)
    error: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict, sa_type=JSONType)
    n_examples: int = 0
    duration_s: float = 0.0


class EvaluationCreate(EvaluationBase):
    pass


class Evaluation(EvaluationBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str | None = idempotency_key_field("Key of the request that recorded it.")
    created_at: datetime = Field(default_factory=utcnow, sa_type=TZDateTime)


class EvaluationPublic(EvaluationBase):
    id: int
    created_at: datetime


class EvaluationsPublic(SQLModel):
    data: list[EvaluationPublic]
    count: int


class EvalExampleBase(SQLModel):
    """One example's scores within an evaluation (the unit the gate pairs on)."""

    position: int = Field(description="Order within the evaluation.")
    example_id: str = Field(max_length=200)
    scores: dict[str, float] = Field(default_factory=dict, sa_type=JSONType)
    details: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)


class EvalExampleCreate(EvalExampleBase):
    pass


class EvalExample(EvalExampleBase, table=True):
    __tablename__ = "eval_example"
    id: int | None = Field(default=None, primary_key=True)
    evaluation_id: int = Field(foreign_key="evaluation.id", index=True)


class EvalExamplePublic(EvalExampleBase):
    id: int
    evaluation_id: int


class EvalExamplesPublic(SQLModel):
    data: list[EvalExamplePublic]
    count: int
