"""Data access for evaluations and their per-example scores: record one with all its
examples (one transaction, once per idempotency key), look up, list, and the gate's fast
read of scores."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sqlmodel import Session, col, select

from service.crud._common import count_rows, get_row, insert_once
from service.models import (
    Checkpoint,
    EvalExample,
    EvalExampleCreate,
    Evaluation,
    EvaluationCreate,
    Run,
)


def record_evaluation(
    *,
    session: Session,
    evaluation_in: EvaluationCreate,
    examples: Sequence[EvalExampleCreate] = (),
    idempotency_key: str | None = None,
) -> Evaluation:
    """Insert an evaluation and all its examples in one transaction (once per key).

    `n_examples` defaults to `len(examples)` when left at 0. Scores and metrics must be
    finite: JSON (and so Postgres) cannot store NaN or infinity.
    """
    get_row(session, Checkpoint, evaluation_in.checkpoint_id)
    _check_finite("metrics", evaluation_in.metrics)
    for example in examples:
        _check_finite(f"example '{example.example_id}' scores", example.scores)
    evaluation = Evaluation.model_validate(
        evaluation_in, update={"idempotency_key": idempotency_key}
    )
    if examples and not evaluation.n_examples:
        evaluation.n_examples = len(examples)
    expect = {
        name: getattr(evaluation, name)
        for name in ("checkpoint_id", "evaluator", "config_hash", "status", "n_examples")
    }

    def write() -> Evaluation:
        session.add(evaluation)
        session.flush()
        if examples:
            rows = [
                {
                    "evaluation_id": evaluation.id,
                    "position": ex.position,
                    "example_id": ex.example_id,
                    "scores": ex.scores,
                    "details": ex.details,
                }
                for ex in examples
            ]
            # One Core executemany on the table: the ORM bulk path costs ~3x more per row.
            session.execute(EvalExample.__table__.insert(), rows)  # type: ignore[attr-defined]
        return evaluation

    return insert_once(
        session=session, model=Evaluation, key=idempotency_key, expect=expect, write=write
    )


def get_evaluation(*, session: Session, evaluation_id: int) -> Evaluation:
    """Return an evaluation by id."""
    return get_row(session, Evaluation, evaluation_id)


def list_evaluations(
    *, session: Session, run_id: int | None = None, checkpoint_id: int | None = None
) -> list[Evaluation]:
    """List evaluations of a run's checkpoints and/or one checkpoint, oldest first."""
    query = select(Evaluation)
    if run_id is not None:
        get_row(session, Run, run_id)
        query = query.join(Checkpoint, col(Checkpoint.id) == col(Evaluation.checkpoint_id))
        query = query.where(Checkpoint.run_id == run_id)
    if checkpoint_id is not None:
        get_row(session, Checkpoint, checkpoint_id)
        query = query.where(Evaluation.checkpoint_id == checkpoint_id)
    query = query.order_by(col(Evaluation.created_at), col(Evaluation.id))
    return list(session.exec(query).all())


def list_examples(
    *, session: Session, evaluation_id: int, limit: int | None = None, offset: int = 0
) -> tuple[list[EvalExample], int]:
    """Return an evaluation's examples by position (one page) and how many it has."""
    get_row(session, Evaluation, evaluation_id)
    query = select(EvalExample).where(EvalExample.evaluation_id == evaluation_id)
    ordered = query.order_by(col(EvalExample.position), col(EvalExample.id))
    rows = session.exec(ordered.offset(offset).limit(limit)).all()
    return list(rows), count_rows(session, query)


def example_scores(*, session: Session, evaluation_id: int) -> list[tuple[str, Any, Any]]:
    """Return (example_id, scores, cluster) per example by position, without ORM objects.

    The gate reads tens of thousands of rows per checkpoint: building a row object and a
    validated model for each, or decoding every example's details (outputs, prompts),
    costs more than the statistics, so this selects the scores and the cluster id only.
    """
    get_row(session, Evaluation, evaluation_id)
    cluster = col(EvalExample.details)["cluster"].as_string()
    query = (
        select(col(EvalExample.example_id), col(EvalExample.scores), cluster)
        .where(EvalExample.evaluation_id == evaluation_id)
        .order_by(col(EvalExample.position), col(EvalExample.id))
    )
    return [(row[0], row[1], row[2]) for row in session.execute(query)]


def _check_finite(what: str, values: dict[str, float]) -> None:
    bad = [key for key, value in values.items() if not math.isfinite(value)]
    if bad:
        raise ValueError(f"{what}: {', '.join(bad)} not finite; JSON cannot store NaN or inf")
