"""The evaluation page: one evaluation's facts and metrics, and its examples, filtered.

Owns `GET /evaluations/{id}`: parsing the filter form (a "Show" preset, a score range, a
text search, the page), deciding which presets apply to this evaluator's score keys, and
turning each example's details into the cells a reader scans (prompt, output, reference).
The SQL is `dashboards.queries.evaluation`'s. The filter form works as a plain GET form;
with htmx it swaps only the examples table and pushes the URL.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Query, Request, Response
from sqlmodel import Session

from dashboards.queries import evaluation as queries
from dashboards.session import ViewerDep
from dashboards.web import page_router, parse_id, render
from service.errors import NotFoundError
from service.models import EvalExample

router = page_router()

SHOW_LABELS = {
    "all": "All examples",
    "invalid_json": "Invalid JSON",
    "unsafe": "Unsafe",
    "wrong_label": "Wrong label",
    "errors": "Errors",
}


@dataclass
class ExampleCells:
    """What one row of the examples table shows."""

    position: int
    example_id: str
    input: str | None
    output: str | None
    predicted: str | None
    reference: str | None
    scores: dict[str, float]
    error: str | None
    other: dict[str, str] = field(default_factory=dict)


@router.get("/evaluations/{evaluation_id}")
def evaluation_page(
    request: Request,
    viewer: ViewerDep,
    evaluation_id: str,
    show: str = "all",
    score: str = "",
    low: Annotated[str, Query(alias="min")] = "",
    high: Annotated[str, Query(alias="max")] = "",
    q: str = "",
    page: str = "1",
) -> Response:
    """Show one evaluation: facts, metrics and its examples (filtered, 100 per page)."""
    if parse_id(evaluation_id) is None:
        raise NotFoundError(f"evaluation '{evaluation_id}' not found (ids are numbers)")
    with Session(request.app.state.engine) as session:
        context = queries.evaluation_context(session=session, evaluation_id=int(evaluation_id))
        keys = queries.score_keys(session=session, evaluation_id=int(evaluation_id))
        options = show_options(keys)
        filters, problems = parse_filters(
            show=show, score=score, low=low, high=high, search=q, page=page, keys=keys
        )
        examples = queries.list_examples(
            session=session, evaluation_id=int(evaluation_id), filters=filters, keys=keys
        )
        cells = [example_cells(row) for row in examples.rows]
    form = {"show": filters.show, "score": score, "min": low, "max": high, "q": q}
    return render(
        request,
        "evaluation.html",
        {
            "ctx": context,
            "keys": keys,
            "options": options,
            "labels": SHOW_LABELS,
            "form": form,
            "problems": problems,
            "examples": examples,
            "cells": cells,
            "other_columns": any(c.other for c in cells),
            "page_url": _page_url(int(evaluation_id), form),
        },
    )


def show_options(keys: list[str]) -> list[str]:
    """Return the "Show" presets that apply to an evaluation with these score keys."""
    options = ["all"]
    if "valid" in keys:
        options.append("invalid_json")
    if queries.unsafe_keys(keys):
        options.append("unsafe")
    if "correct" in keys:
        options.append("wrong_label")
    options.append("errors")
    return options


def parse_filters(
    *,
    show: str,
    score: str,
    low: str,
    high: str,
    search: str,
    page: str,
    keys: list[str],
) -> tuple[queries.ExampleFilters, list[str]]:
    """Turn the form's strings into filters; a bad value is dropped with a message."""
    problems: list[str] = []
    options = show_options(keys)
    if show not in options:
        shown = ", ".join(SHOW_LABELS[o] for o in options)
        problems.append(f"'{show}' is not a filter for this evaluation (choose: {shown}).")
        show = "all"
    minimum = _number(low, "Min", problems)
    maximum = _number(high, "Max", problems)
    key: str | None = score.strip() or None
    if key is not None and key not in keys:
        problems.append(f"This evaluation has no score '{key}' (scores: {', '.join(keys)}).")
        key = None
    if key is None and (minimum is not None or maximum is not None):
        problems.append("Choose a score for the Min/Max range.")
    if minimum is not None and maximum is not None and minimum > maximum:
        problems.append(f"Min {minimum:g} is above Max {maximum:g}: no example can match.")
    number = parse_id(page) or 1
    if page.strip() and page.strip() != str(number):
        problems.append(f"'{page}' is not a page number; showing page 1.")
    filters = queries.ExampleFilters(
        show=show, score=key, min=minimum, max=maximum, search=search.strip() or None, page=number
    )
    return filters, problems


def _number(text: str, label: str, problems: list[str]) -> float | None:
    if not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        problems.append(f"{label} must be a number, not '{text}'.")
        return None
    return value


def example_cells(row: EvalExample) -> ExampleCells:
    """Pick the prompt, output and reference out of an example's details."""
    details = dict(row.details or {})
    used: set[str] = set()

    def first(names: tuple[str, ...]) -> str | None:
        for name in names:
            if name in details:
                used.add(name)
                return _text(details[name])
        return None

    cells = ExampleCells(
        position=row.position,
        example_id=row.example_id,
        input=first(queries.INPUT_KEYS),
        output=first(queries.OUTPUT_KEYS),
        predicted=first((queries.PREDICTED_KEY,)),
        reference=first(queries.REFERENCE_KEYS),
        scores=dict(row.scores or {}),
        error=first(("error",)),
    )
    cells.other = {k: _text(v) for k, v in details.items() if k not in used}
    return cells


def _text(value: Any) -> str:
    """Show strings as they are and anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _page_url(evaluation_id: int, form: dict[str, str]) -> Any:
    kept = {k: v for k, v in form.items() if v and not (k == "show" and v == "all")}

    def url(page: int) -> str:
        query = urlencode({**kept, "page": page} if page > 1 else kept)
        return f"/evaluations/{evaluation_id}" + (f"?{query}" if query else "")

    return url
