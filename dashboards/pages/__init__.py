"""The dashboard's pages, one module per page; `ROUTERS` is what `dashboards.web.mount` adds.

How to add a page: write `dashboards/pages/<noun>.py` with `router = page_router()`, take
`ViewerDep` (read) or `ActorDep` (write + CSRF) as a parameter, put its SQL in
`dashboards/queries/<noun>.py`, render a template that extends `base.html`, and list the
router here. `dashboards/pages/jobs.py` is a short example.
"""

from __future__ import annotations

from fastapi import APIRouter

from dashboards.pages import compare, evaluation, jobs, login, registry, run, runs

ROUTERS: tuple[APIRouter, ...] = (
    login.router,
    runs.router,
    run.router,
    compare.router,
    evaluation.router,
    registry.router,
    jobs.router,
)
