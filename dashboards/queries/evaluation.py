"""Data access for the evaluation page: one evaluation, its context and its examples, filtered.

Owns the SQL behind `/evaluations/{id}`: the evaluation with its checkpoint, run and the
other evaluations of that checkpoint; the per-example score keys (read from a sample of
rows); and one page of examples filtered in the database (JSON extraction through
SQLAlchemy's `column[key].as_float()` / `.as_string()`, which works on SQLite's JSON and
Postgres' JSONB alike) with the matching and total counts. Which filters apply and how
query strings are parsed is `dashboards.pages.evaluation`'s; this module never writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, false, func, or_
from sqlmodel import Session, col, select

from dashboards.queries import json_keys
from service import crud
from service.models import Checkpoint, EvalExample, Evaluation, Run

PAGE_SIZE = 100
#: Rows read to learn an evaluation's score keys (evaluators write the same keys per row).
KEY_SAMPLE = 500
#: Details keys holding the prompt, the model's output and the expected answer, by priority.
INPUT_KEYS = ("input", "prompt", "text")
OUTPUT_KEYS = ("output", "response")
REFERENCE_KEYS = ("reference", "gold", "target")
PREDICTED_KEY = "predicted"
#: Preset filters: the value of the "Show" select.
SHOW_CHOICES = ("all", "invalid_json", "unsafe", "wrong_label", "errors")


@dataclass(frozen=True)
class ExampleFilters:
    """What the user asked for; values are already validated by the page."""

    show: str = "all"
    score: str | None = None
    min: float | None = None
    max: float | None = None
    search: str | None = None
    page: int = 1


@dataclass
class EvaluationContext:
    """An evaluation, the checkpoint and run it belongs to, and its sibling evaluations."""

    evaluation: Evaluation
    checkpoint: Checkpoint
    run: Run
    siblings: list[Evaluation]


@dataclass
class ExamplesPage:
    """One page of examples, how many match the filters, and how many there are in all."""

    rows: list[EvalExample]
    matched: int
    total: int
    page: int
    pages: int


def evaluation_context(*, session: Session, evaluation_id: int) -> EvaluationContext:
    """Return an evaluation with its checkpoint, run and the checkpoint's other evaluations."""
    evaluation = crud.get_evaluation(session=session, evaluation_id=evaluation_id)
    checkpoint = crud.get_checkpoint(session=session, checkpoint_id=evaluation.checkpoint_id)
    run = crud.get_run(session=session, run_id=checkpoint.run_id)
    query = (
        select(Evaluation)
        .where(Evaluation.checkpoint_id == checkpoint.id, Evaluation.id != evaluation_id)
        .order_by(col(Evaluation.evaluator), col(Evaluation.id))
    )
    siblings = list(session.exec(query).all())
    return EvaluationContext(evaluation, checkpoint, run, siblings)


def score_keys(*, session: Session, evaluation_id: int) -> list[str]:
    """Return the per-example score keys of an evaluation, sorted (from its first rows)."""
    query = (
        select(col(EvalExample.scores))
        .where(EvalExample.evaluation_id == evaluation_id)
        .order_by(col(EvalExample.position))
        .limit(KEY_SAMPLE)
    )
    keys: set[str] = set()
    for scores in session.exec(query).all():
        keys.update(scores or {})
    return sorted(keys)


def unsafe_keys(keys: list[str]) -> list[str]:
    """Return the 0/1 'unsafe' verdict keys (llama_guard's `response_unsafe`), not p_unsafe."""
    return [
        k
        for k in keys
        if k.endswith("unsafe") and not k.endswith("p_unsafe") and json_keys.is_metric_key(k)
    ]


def list_examples(
    *, session: Session, evaluation_id: int, filters: ExampleFilters, keys: list[str]
) -> ExamplesPage:
    """Return one page of an evaluation's examples matching `filters`, with both counts."""
    base = select(EvalExample).where(EvalExample.evaluation_id == evaluation_id)
    total = _count(session, base)
    conditions = _conditions(filters, keys)
    query = base.where(*conditions) if conditions else base
    matched = _count(session, query) if conditions else total
    pages = max(1, -(-matched // PAGE_SIZE))
    page = min(max(1, filters.page), pages)
    ordered = query.order_by(col(EvalExample.position), col(EvalExample.id))
    rows = session.exec(ordered.offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE)).all()
    return ExamplesPage(list(rows), matched, total, page, pages)


def _conditions(filters: ExampleFilters, keys: list[str]) -> list[ColumnElement[bool]]:
    scores, details = col(EvalExample.scores), col(EvalExample.details)
    out: list[ColumnElement[bool]] = []
    if filters.show == "invalid_json":
        out.append(scores["valid"].as_float() == 0)
    elif filters.show == "wrong_label":
        out.append(scores["correct"].as_float() == 0)
    elif filters.show == "unsafe":
        verdicts = [scores[k].as_float() == 1 for k in unsafe_keys(keys)]
        out.append(or_(*verdicts) if verdicts else false())
    elif filters.show == "errors":
        out.append(details["error"].as_string().is_not(None))
    if filters.score is not None:
        value = scores[json_keys.metric_key(filters.score, what="score")].as_float()
        if filters.min is not None:
            out.append(value >= filters.min)
        if filters.max is not None:
            out.append(value <= filters.max)
    if filters.search:
        term = filters.search
        fields = (*INPUT_KEYS, *OUTPUT_KEYS, PREDICTED_KEY)
        out.append(or_(*(details[k].as_string().icontains(term, autoescape=True) for k in fields)))
    return out


def _count(session: Session, query: Any) -> int:
    return session.exec(select(func.count()).select_from(query.subquery())).one()
