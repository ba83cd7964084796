"""The jobs page: the queue (filtered by status and kind), one job's log, the runners.

The short example of a dashboard page: each route takes the viewer (`ViewerDep` to read,
`ActorDep` to act), reads through `dashboards.queries.jobs`, writes through
`service.crud` like the API does, and renders a template. Bad filter values are named on
the page; unknown jobs get the 404 page from `PageRoute`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from urllib.parse import urlencode

from fastapi import Request, Response
from fastapi.responses import RedirectResponse

from dashboards.queries import jobs as jobs_q
from dashboards.session import ActorDep, ViewerDep
from dashboards.web import page_router, render
from service import crud
from service.api.deps import ReadSession, WriteSession
from service.errors import unknown_name
from service.models import JOB_KINDS, JobStatus

router = page_router()
#: Jobs in these states can still be cancelled.
CANCELLABLE = ("queued", "running")
#: Far past any real queue; keeps the page's SQL offset inside a 64-bit integer.
MAX_PAGE = 1_000_000


@router.get("/jobs")
def jobs_page(
    request: Request,
    viewer: ViewerDep,
    session: ReadSession,
    status: str = "",
    kind: str = "",
    page: int = 1,
) -> Response:
    """List jobs, newest first, with counts per status, and the runners."""
    status_f, kind_f = _known(status, list(JobStatus)), _known(kind, JOB_KINDS)
    errors = (
        [unknown_name("job status", status, list(JobStatus))] if status and not status_f else []
    )
    if kind and not kind_f:
        errors.append(unknown_name("job kind", kind, JOB_KINDS))
    page = min(max(page, 1), MAX_PAGE)
    rows, count = jobs_q.list_jobs(
        session=session,
        status=status_f,
        kind=kind_f,
        offset=(page - 1) * jobs_q.PAGE_SIZE,
    )
    context = {
        "rows": rows,
        "count": count,
        "counts": jobs_q.status_counts(session=session),
        "runners": crud.list_runners(session=session),
        "status": status_f or "",
        "kind": kind_f or "",
        "statuses": list(JobStatus),
        "kinds": JOB_KINDS,
        "errors": errors,
        "page": page,
        "last_page": max(1, -(-count // jobs_q.PAGE_SIZE)),
        "page_url": lambda n: "/jobs?" + urlencode(_filters(status_f, kind_f, n)),
        "cancellable": CANCELLABLE,
    }
    return render(request, "jobs.html", context, status_code=400 if errors else 200)


@router.get("/jobs/{job_id}")
def job_page(request: Request, viewer: ViewerDep, session: ReadSession, job_id: int) -> Response:
    """Show one job: its facts, spec, payload and newest log lines."""
    row = jobs_q.get_job(session=session, job_id=job_id)
    context = {
        "row": row,
        "job": row.job,
        "payload": json.dumps(row.job.payload, indent=2, sort_keys=True),
        "log": jobs_q.log_tail(session=session, job_id=job_id),
        "cancellable": CANCELLABLE,
    }
    return render(request, "jobs.html", context)


@router.post("/jobs/{job_id}/cancel")
def cancel_job(viewer: ActorDep, session: WriteSession, job_id: int) -> Response:
    """Cancel a job (a running one is asked to stop), then go back to the jobs page."""
    crud.cancel_job(session=session, job_id=job_id)
    return RedirectResponse("/jobs", status_code=303)


def _known(value: str, options: Sequence[str]) -> str | None:
    """Return a filter value if it is one of `options`; '' and unknown values filter nothing."""
    return value if value in options else None


def _filters(status: str | None, kind: str | None, page: int) -> Sequence[tuple[str, str]]:
    """Return the query parameters of a jobs page, leaving out the defaults."""
    pairs = [("status", status), ("kind", kind), ("page", str(page) if page > 1 else None)]
    return [(name, value) for name, value in pairs if value]
