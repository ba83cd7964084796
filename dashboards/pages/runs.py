"""The runs page (`/`): a filterable, sortable, paged table of runs with their best scores.

Owns reading the filter form's query string (a bad value becomes a message on the page,
never an error), the table's columns and sort links, and the htmx partial
`/runs/table` that re-renders only the table when a filter changes. The SQL is
`dashboards.queries.runs`; selecting runs posts nothing: the table sits in a plain
`GET /compare` form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from fastapi import Request, Response
from sqlmodel import Session

from dashboards.queries import runs as q
from dashboards.session import ViewerDep
from dashboards.web import page_router, render
from service.gate.rule_spec import lower_is_better
from service.models import RunStatus

router = page_router()
#: At most this many metric columns, so the table stays readable.
MAX_METRIC_COLUMNS = 8
#: The query parameters the filter form sends (and sort links keep).
FILTER_KEYS = ("experiment", "status", "tag", "name", "metric", "min", "max")
LABELS = {"name": "Name", "created": "Created", "status": "Status", "experiment": "Experiment"}


@dataclass
class Form:
    """The filter form's raw values (to refill it) and what they mean (for the query)."""

    raw: dict[str, str]
    filters: q.RunFilters
    messages: list[str] = field(default_factory=list)


def _number(raw: dict[str, str], key: str, label: str, messages: list[str]) -> float | None:
    text = raw.get(key, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if value != value or value in (float("inf"), float("-inf")):
        messages.append(f"{label} must be a number, not '{text}'; it was ignored.")
        return None
    return value


def parse_form(params: dict[str, str], *, experiments: dict[str, int], metrics: list[str]) -> Form:
    """Turn the query string into filters; say what was wrong instead of failing."""
    raw = {key: params.get(key, "").strip() for key in (*FILTER_KEYS, "sort", "order", "page")}
    messages: list[str] = []
    experiment_id = None
    if raw["experiment"]:
        experiment_id = experiments.get(raw["experiment"])
        if experiment_id is None:
            messages.append(f"Unknown experiment '{raw['experiment']}'; showing all experiments.")
    status = None
    if raw["status"]:
        if raw["status"] in RunStatus.__members__:
            status = RunStatus(raw["status"])
        else:
            choices = ", ".join(RunStatus)
            messages.append(f"Unknown status '{raw['status']}' (choose from {choices}).")
    tag_key, _, tag_value = raw["tag"].partition("=")
    if raw["tag"] and not tag_key.strip():
        messages.append(f"Tag filter '{raw['tag']}' needs a key: write key=value.")
    metric = raw["metric"] or None
    if metric is not None and not _known_metric(metric, metrics):
        messages.append(f"Unknown metric '{metric}'; it was ignored.")
        metric = None
    low = _number(raw, "min", "Min", messages)
    high = _number(raw, "max", "Max", messages)
    if metric is None and (low is not None or high is not None):
        messages.append("Min and Max need a Metric to apply to; they were ignored.")
    sort, descending = _sort(raw, metrics, messages)
    digits = raw["page"].isascii() and raw["page"].isdecimal() and len(raw["page"]) < 10
    page = int(raw["page"]) if digits and int(raw["page"]) > 0 else 1
    filters = q.RunFilters(
        experiment_id=experiment_id,
        status=status,
        tag_key=tag_key.strip() or None,
        tag_value=tag_value.strip() if "=" in raw["tag"] else None,
        name=raw["name"] or None,
        metric=metric,
        min=low if metric else None,
        max=high if metric else None,
        sort=sort,
        descending=descending,
        page=page,
    )
    return Form(raw=raw, filters=filters, messages=messages)


def _sort(raw: dict[str, str], metrics: list[str], messages: list[str]) -> tuple[str, bool]:
    """Return the sort key and direction; an unknown key falls back to newest first."""
    sort = raw["sort"] or "created"
    if sort not in q.SORT_COLUMNS and not _known_metric(sort, metrics):
        messages.append(f"Cannot sort by '{sort}': no such column or metric.")
        sort = raw["sort"] = "created"
        raw["order"] = ""  # so the sort links and the form stop carrying the bad value
    if raw["order"] in ("asc", "desc"):
        return sort, raw["order"] == "desc"
    return sort, _default_descending(sort)


def _known_metric(name: str, metrics: list[str]) -> bool:
    """Return whether `name` is a listed metric, or `evaluator.key` of a listed evaluator.

    The list is a cache of recent keys (see `dashboards.queries.runs`); a key only older
    evaluations wrote (an lm_eval task run once, a per-label metric) is still sortable.
    """
    evaluator, _, key = name.partition(".")
    return name in metrics or (bool(key) and any(m.startswith(f"{evaluator}.") for m in metrics))


def _default_descending(sort: str) -> bool:
    """Newest first; names A-Z; metrics best first (their direction guessed by name)."""
    if sort in ("name", "status", "experiment"):
        return False
    return sort == "created" or not lower_is_better(sort)


def _href(raw: dict[str, str], **changes: Any) -> str:
    """Return `/?...` with the current filters, then `changes` (None drops a key)."""
    params = {key: raw[key] for key in (*FILTER_KEYS, "sort", "order") if raw.get(key)}
    params.update({key: str(value) for key, value in changes.items() if value is not None})
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
    return "/?" + urlencode(params) if params else "/"


def _header(form: Form, key: str, label: str) -> dict[str, Any]:
    """Return a sortable column's label, link (toggles when sorted) and aria-sort."""
    filters = form.filters
    sorted_here = filters.sort == key
    if sorted_here:
        order = "asc" if filters.descending else "desc"
        aria = "descending" if filters.descending else "ascending"
    else:
        order = "desc" if _default_descending(key) else "asc"
        aria = None
    return {
        "key": key,
        "label": label,
        "href": _href(form.raw, sort=key, order=order, page=None),
        "aria_sort": aria,
        "arrow": ("▼" if filters.descending else "▲") if sorted_here else "",
    }


def _metric_columns(form: Form, page: q.RunsPage) -> list[str]:
    """Return the metric columns: chosen/sorted metric first, then those on this page."""
    present = sorted({name for row in page.rows for name in row.metrics})
    first = [m for m in (form.filters.metric, form.filters.sort) if m and m not in q.SORT_COLUMNS]
    columns = list(dict.fromkeys([*first, *present]))
    return columns[:MAX_METRIC_COLUMNS]


def _context(request: Request) -> dict[str, Any]:
    """Read the filters, run the queries, and build what both templates show."""
    with Session(request.app.state.engine) as session:
        experiments = q.list_experiments(session=session)
        metrics = q.metric_names(session=session)
        form = parse_form(
            dict(request.query_params),
            experiments={name: id_ for id_, name in experiments},
            metrics=metrics,
        )
        page = q.list_runs(session=session, filters=form.filters)
    columns = _metric_columns(form, page)
    headers = {key: _header(form, key, label) for key, label in LABELS.items()}
    pager = {
        "prev": _href(form.raw, page=page.page - 1) if page.page > 1 else None,
        "next": _href(form.raw, page=page.page + 1) if page.page < page.pages else None,
    }
    return {
        "form": form.raw,
        "messages": form.messages,
        "experiments": [name for _, name in experiments],
        "statuses": list(RunStatus),
        "metrics": metrics,
        "page": page,
        "headers": headers,
        "metric_headers": [_header(form, name, name) for name in columns],
        "pager": pager,
    }


@router.get("/")
def runs_page(request: Request, viewer: ViewerDep) -> Response:
    """Show the runs table with its filter form."""
    return render(request, "runs.html", _context(request))


@router.get("/runs/table")
def runs_table(request: Request, viewer: ViewerDep) -> Response:
    """Return only the runs table (for htmx), with the page's URL for the address bar."""
    kept = {key: value for key, value in request.query_params.items() if value}
    headers = {"HX-Push-Url": f"/?{urlencode(kept)}" if kept else "/"}
    return render(request, "_runs_table.html", _context(request), headers=headers)
