"""Evaluation routes: record with examples (one request, one transaction), list, get, examples.

Recording honours `Idempotency-Key`: a retried record returns the evaluation it made.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from service import crud
from service.api.auth import Reader, Reporter
from service.api.deps import ReadSession, WriteSession
from service.api.schemas import (
    MAX_ID,
    EvaluationRecord,
    ExampleScore,
    ExampleScoresPublic,
    IdempotencyKey,
    IdPath,
    IdQuery,
    Offset,
)
from service.models import (
    EvalExamplePublic,
    EvalExamplesPublic,
    EvaluationPublic,
    EvaluationsPublic,
)

router = APIRouter(prefix="/evaluations", tags=["evaluations"])


@router.post("", status_code=201, response_model=EvaluationPublic)
def record_evaluation(
    record: EvaluationRecord,
    _: Reporter,
    session: WriteSession,
    idempotency_key: IdempotencyKey = None,
) -> EvaluationPublic:
    """Record an evaluation and all its per-example scores in one transaction (once per key)."""
    row = crud.record_evaluation(
        session=session,
        evaluation_in=record.evaluation,
        examples=record.examples,
        idempotency_key=idempotency_key,
    )
    return EvaluationPublic.model_validate(row)


@router.get("", response_model=EvaluationsPublic)
def list_evaluations(
    _: Reader, session: ReadSession, run_id: IdQuery = None, checkpoint_id: IdQuery = None
) -> EvaluationsPublic:
    """List evaluations of a run's checkpoints and/or of one checkpoint, oldest first."""
    rows = crud.list_evaluations(session=session, run_id=run_id, checkpoint_id=checkpoint_id)
    return EvaluationsPublic(
        data=[EvaluationPublic.model_validate(r) for r in rows], count=len(rows)
    )


@router.get("/{evaluation_id}", response_model=EvaluationPublic)
def get_evaluation(evaluation_id: IdPath, _: Reader, session: ReadSession) -> EvaluationPublic:
    """Return an evaluation."""
    row = crud.get_evaluation(session=session, evaluation_id=evaluation_id)
    return EvaluationPublic.model_validate(row)


@router.get("/{evaluation_id}/examples", response_model=EvalExamplesPublic)
def list_examples(
    evaluation_id: IdPath,
    _: Reader,
    session: ReadSession,
    limit: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="Page size; all if unset.")
    ] = None,
    offset: Offset = 0,
) -> EvalExamplesPublic:
    """List an evaluation's per-example scores in their original order (one page)."""
    rows, count = crud.list_examples(
        session=session, evaluation_id=evaluation_id, limit=limit, offset=offset
    )
    return EvalExamplesPublic(data=[EvalExamplePublic.model_validate(r) for r in rows], count=count)


@router.get("/{evaluation_id}/scores", response_model=ExampleScoresPublic)
def list_example_scores(
    evaluation_id: IdPath, _: Reader, session: ReadSession
) -> ExampleScoresPublic:
    """Return every example's (example_id, scores, cluster) in recorded order, unpaged."""
    rows = crud.example_scores(session=session, evaluation_id=evaluation_id)
    data = [ExampleScore(example_id=e, scores=s or {}, cluster=c) for e, s, c in rows]
    return ExampleScoresPublic(data=data, count=len(data))
