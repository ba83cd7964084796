"""Data access for the runs page: one page of runs with their best scores, in a few queries.

Owns the SQL behind `/` and `/runs/table`: filtering (experiment, status, tag, name,
metric range), sorting (by a column or by a metric of the best checkpoint), paging and
counting all happen in the database; Python only ever holds the 50 runs of one page and
their best checkpoints' evaluations. A run's "best scores" are the metrics of the newest
succeeded evaluation per evaluator of its `best_checkpoint_id`. It does not parse query
strings (`dashboards.pages.runs`) and never writes.

The list of metric names (`evaluator.key`) is kept per database in this process and
extended incrementally: each call reads `max(evaluation.id)` (one index lookup) and only
the evaluations newer than the last call; after a gap of more than `RESCAN_AFTER` rows
(e.g. the first call) it reads just the newest succeeded evaluation of each evaluator.
So a page view never passes over every evaluation. A key that only older evaluations of
an evaluator carry can be missed; evaluators write the same keys every time.

Sorting or filtering by a metric joins each run's best checkpoint to its newest succeeded
evaluation of that evaluator (`NOT EXISTS` a newer one) and orders by the JSON value,
runs without it last. Measured on Postgres with 10,000 runs and 60,000 evaluations, the
existing indexes (evaluation.evaluator, evaluation.checkpoint_id) serve it; an index on
(checkpoint_id, evaluator, id) made no measurable difference. Metric and tag keys pass
`dashboards.queries.json_keys` first (a bad one raises ValueError: the page's 400), since
SQLite's JSON path cannot escape them.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, null
from sqlalchemy import select as sa_select
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from dashboards.queries import json_keys
from service.models import Checkpoint, Evaluation, EvaluationStatus, Experiment, Run, RunStatus

PAGE_SIZE = 50
#: Columns a runs table may be sorted by besides metrics.
SORT_COLUMNS = ("name", "created", "status", "experiment")


@dataclass(frozen=True)
class RunFilters:
    """What the user asked for; values are already validated by the page."""

    experiment_id: int | None = None
    status: RunStatus | None = None
    tag_key: str | None = None
    tag_value: str | None = None
    name: str | None = None
    metric: str | None = None
    min: float | None = None
    max: float | None = None
    sort: str = "created"
    descending: bool = True
    page: int = 1

    @property
    def has_range(self) -> bool:
        """Return whether Min or Max applies to the chosen metric."""
        return bool(self.metric) and (self.min is not None or self.max is not None)


@dataclass
class RunRow:
    """One run of the table with its best checkpoint's scores."""

    id: int
    name: str
    experiment: str
    status: str
    tags: dict[str, str]
    created_at: datetime
    best_checkpoint_id: int | None
    best_step: int | None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class RunsPage:
    """One page of runs, how many match in all, and which page this is."""

    rows: list[RunRow]
    count: int
    page: int
    pages: int


def list_experiments(*, session: Session) -> list[tuple[int, str]]:
    """Return (id, name) of every experiment, by name."""
    query = select(Experiment.id, Experiment.name).order_by(col(Experiment.name))
    return [(id_, name) for id_, name in session.exec(query).all() if id_ is not None]


#: Past this many new evaluations, read the newest per evaluator instead of all new ones.
RESCAN_AFTER = 2000
_names_lock = threading.Lock()
# database URL -> (largest evaluation id read, metric names seen)
_names: dict[str, tuple[int, frozenset[str]]] = {}


def metric_names(*, session: Session) -> list[str]:
    """Return every `evaluator.key` found in the registry's evaluations, sorted."""
    url = session.get_bind().engine.url.render_as_string(hide_password=True)
    with _names_lock:
        last, names = _names.get(url, (0, frozenset()))
    top = session.exec(select(func.max(Evaluation.id))).one() or 0
    if top - last > RESCAN_AFTER or top < last:  # many new rows, or another database
        found = _newest_keys(session)
    elif top > last:
        query = select(Evaluation.evaluator, Evaluation.metrics).where(
            col(Evaluation.id) > last,
            col(Evaluation.id) <= top,
            Evaluation.status == EvaluationStatus.succeeded,
        )
        found = {f"{ev}.{key}" for ev, metrics in session.exec(query).all() for key in metrics}
    else:
        return sorted(names)
    names = (names if top >= last else frozenset()) | found
    with _names_lock:
        _names[url] = (top, names)
    return sorted(names)


def _newest_keys(session: Session) -> set[str]:
    """Return the metric names in the newest succeeded evaluation of each evaluator."""
    newest = (
        select(func.max(Evaluation.id))
        .where(Evaluation.status == EvaluationStatus.succeeded)
        .group_by(col(Evaluation.evaluator))
    )
    rows = session.exec(
        select(Evaluation.evaluator, Evaluation.metrics).where(col(Evaluation.id).in_(newest))
    ).all()
    return {f"{evaluator}.{key}" for evaluator, metrics in rows for key in metrics or {}}


def _best_metric(query: Any, metric: str) -> tuple[Any, ColumnElement[Any]]:
    """Left-join each run's best checkpoint to the metric's value in its newest succeeded
    evaluation of the metric's evaluator; return the query and the value (NULL if none)."""
    evaluator, _, key = json_keys.metric_key(metric).partition(".")
    scored, newer = aliased(Evaluation), aliased(Evaluation)
    succeeded = EvaluationStatus.succeeded
    is_newest = ~(
        select(newer.id)
        .where(
            newer.checkpoint_id == scored.checkpoint_id,
            newer.evaluator == scored.evaluator,
            newer.status == succeeded,
            col(newer.id) > col(scored.id),
        )
        .exists()
    )
    # Only best checkpoints' evaluations: a third of them or less, and one row per run.
    values = (
        select(
            col(scored.checkpoint_id).label("checkpoint_id"),
            col(scored.metrics)[key].as_float().label("value"),
        )
        .where(
            scored.evaluator == evaluator,
            scored.status == succeeded,
            col(scored.checkpoint_id).in_(select(Run.best_checkpoint_id)),
            is_newest,
        )
        .subquery()
    )
    query = query.outerjoin(values, values.c.checkpoint_id == Run.best_checkpoint_id)
    return query, values.c.value


def _filtered(query: Any, filters: RunFilters) -> tuple[Any, ColumnElement[Any] | None]:
    """Return `query` (over Run) filtered, and the chosen metric's value if it was joined."""
    conditions: list[ColumnElement[bool]] = []
    if filters.experiment_id is not None:
        conditions.append(col(Run.experiment_id) == filters.experiment_id)
    if filters.status is not None:
        conditions.append(col(Run.status) == filters.status)
    if filters.tag_key:
        tag = col(Run.tags)[json_keys.tag_key(filters.tag_key)].as_string()
        conditions.append(
            tag.is_not(None) if filters.tag_value is None else tag == filters.tag_value
        )
    if filters.name:
        conditions.append(col(Run.name).icontains(filters.name, autoescape=True))
    value = None
    if filters.metric and filters.has_range:
        query, value = _best_metric(query, filters.metric)
        if filters.min is not None:
            conditions.append(value >= filters.min)
        if filters.max is not None:
            conditions.append(value <= filters.max)
    return (query.where(*conditions) if conditions else query), value


def list_runs(*, session: Session, filters: RunFilters) -> RunsPage:
    """Return one page of runs matching `filters`, sorted, with their best scores.

    The page's ids are found first with only the joins that filtering and sorting need;
    names, experiments and steps are then read for those 50 runs alone.
    """
    # With a metric range the window count saves joining the metric a second time; without
    # one it would stop Postgres from reading just the first rows of an index.
    total = func.count().over() if filters.has_range else null()
    ids_query, range_value = _filtered(select(Run.id, total), filters)
    ids_query, order = _sorted(ids_query, filters, range_value)
    ids_query = ids_query.order_by(*order).limit(PAGE_SIZE)
    count = None
    if not filters.has_range:
        count_query, _ = _filtered(select(func.count()).select_from(Run), filters)
        count = session.exec(count_query).one()
    page = _clamp(filters.page, count)
    found = session.exec(ids_query.offset((page - 1) * PAGE_SIZE)).all()
    if not found and page > 1 and count is None:  # past the end: show the last page
        count_query, _ = _filtered(select(func.count()).select_from(Run), filters)
        count = session.exec(count_query).one()
        page = _clamp(page, count)
        found = session.exec(ids_query.offset((page - 1) * PAGE_SIZE)).all()
    if count is None:
        count = found[0][1] if found else 0
    rows = _rows(session, [id_ for id_, _ in found if id_ is not None])
    _attach_best_metrics(session, rows)
    return RunsPage(rows=rows, count=count, page=page, pages=_pages(count))


def _pages(count: int) -> int:
    return max(1, -(-count // PAGE_SIZE))


def _clamp(page: int, count: int | None) -> int:
    """Return `page` within 1..last page (unbounded while the count is unknown)."""
    page = max(1, page)
    return page if count is None else min(page, _pages(count))


def _rows(session: Session, ids: list[int]) -> list[RunRow]:
    """Return the table rows of these runs, in the order of `ids`."""
    if not ids:
        return []
    best = aliased(Checkpoint)
    # SQLAlchemy's select (typed Any for Session.exec): SQLModel's takes four columns at most.
    query: Any = (
        sa_select(
            col(Run.id),
            col(Run.name),
            col(Experiment.name),
            col(Run.status),
            col(Run.tags),
            col(Run.created_at),
            col(Run.best_checkpoint_id),
            col(best.step),
        )
        .join(Experiment, col(Experiment.id) == Run.experiment_id)
        .outerjoin(best, col(best.id) == Run.best_checkpoint_id)
        .where(col(Run.id).in_(ids))
    )
    by_id = {
        id_: RunRow(
            id=id_,
            name=name,
            experiment=experiment,
            status=str(status),
            tags=tags or {},
            created_at=created,
            best_checkpoint_id=best_id,
            best_step=step,
        )
        for id_, name, experiment, status, tags, created, best_id, step in session.exec(query)
    }
    return [by_id[id_] for id_ in ids if id_ in by_id]


def _sorted(
    query: Any, filters: RunFilters, range_value: ColumnElement[Any] | None
) -> tuple[Any, list[ColumnElement[Any]]]:
    """Return the query (joined to what the sort needs) and its ORDER BY."""
    tie = col(Run.id)
    if filters.sort in SORT_COLUMNS:
        column: Any = {
            "name": col(Run.name),
            "created": col(Run.created_at),
            "status": col(Run.status),
            "experiment": col(Experiment.name),
        }[filters.sort]
        if filters.sort == "experiment":
            query = query.join(Experiment, col(Experiment.id) == Run.experiment_id)
        if filters.descending:
            return query, [column.desc(), tie.desc()]
        return query, [column.asc(), tie.asc()]
    if filters.sort == filters.metric and range_value is not None:
        value = range_value  # already joined for the range filter
    else:
        query, value = _best_metric(query, filters.sort)
    direction = value.desc() if filters.descending else value.asc()
    # Runs without the metric go last whichever the direction (NULLS LAST, portably).
    return query, [value.is_(None), direction, tie.desc()]


def _attach_best_metrics(session: Session, rows: list[RunRow]) -> None:
    """Fill each row's metrics from its best checkpoint's newest succeeded evaluations."""
    by_checkpoint: dict[int, list[RunRow]] = {}
    for row in rows:
        if row.best_checkpoint_id is not None:
            by_checkpoint.setdefault(row.best_checkpoint_id, []).append(row)
    if not by_checkpoint:
        return
    query = (
        select(Evaluation.checkpoint_id, Evaluation.evaluator, Evaluation.metrics)
        .where(
            col(Evaluation.checkpoint_id).in_(list(by_checkpoint)),
            Evaluation.status == EvaluationStatus.succeeded,
        )
        .order_by(col(Evaluation.id))  # newer evaluations overwrite older ones
    )
    newest: dict[tuple[int, str], Mapping[str, float]] = {}
    for checkpoint_id, evaluator, metrics in session.exec(query).all():
        newest[(checkpoint_id, evaluator)] = metrics or {}
    for (checkpoint_id, evaluator), metrics in newest.items():
        for row in by_checkpoint[checkpoint_id]:
            row.metrics.update({f"{evaluator}.{key}": value for key, value in metrics.items()})
