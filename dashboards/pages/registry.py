"""The registry page: aliases per experiment with their history, and promote / roll back.

Owns `GET /registry` and the two form posts, `POST /registry/promote` and
`POST /registry/rollback` (write scope and CSRF through `ActorDep`). The routes parse the
form and show the outcome; gating and moving the alias is `service.promotion` (the flow
the CLI shares), the page's SQL is `dashboards.queries.registry`. A move redirects (303)
back to the page, which names the newest move; a refusal renders the page with the
reason and, when the gate ran, its rule-by-rule table.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Form, Request, Response
from fastapi.responses import RedirectResponse
from sqlmodel import Session

from dashboards.queries import registry as queries
from dashboards.session import ActorDep, ViewerDep
from dashboards.web import page_router, parse_id, render, templates
from service import promotion

router = page_router()
templates.env.filters["gate_view"] = queries.gate_view


@router.get("/registry")
def registry_page(
    request: Request, viewer: ViewerDep, experiment: str = "", moved: str = ""
) -> Response:
    """Show every experiment's aliases, their history and the promote form."""
    experiment_id, problem = _experiment_id(experiment)
    return _render(request, experiment_id=experiment_id, moved=moved, problem=problem, result=None)


@router.post("/registry/promote")
def promote(
    request: Request,
    viewer: ActorDep,
    experiment_id: Annotated[str, Form()] = "",
    alias: Annotated[str, Form()] = "production",
    run_id: Annotated[str, Form()] = "",
    checkpoint_id: Annotated[str, Form()] = "",
    skip_gate: Annotated[str, Form()] = "",
) -> Response:
    """Gate a run's best checkpoint (or a given checkpoint) and move the alias if it passes."""
    exp_id, run, checkpoint = _int(experiment_id), _int(run_id), _int(checkpoint_id)
    bad = [
        label
        for label, text, value in (
            ("Experiment", experiment_id, exp_id),
            ("Run", run_id, run),
            ("Checkpoint id", checkpoint_id, checkpoint),
        )
        if text.strip() and value is None
    ]
    if exp_id is None or bad:
        problem = f"{', '.join(bad) or 'Experiment'}: choose from the list or give a number."
        return _render(request, experiment_id=exp_id, problem=problem, status=422)
    result = promotion.promote(
        db_url=request.app.state.db_url,
        write_engine=request.app.state.write_engine,
        settings=request.app.state.settings,
        experiment_id=exp_id,
        alias=alias.strip().removeprefix("@"),
        run_id=run,
        checkpoint_id=checkpoint,
        actor=f"dashboard:{viewer.principal.name}",
        token_id=viewer.principal.token_id,
        skip_gate=bool(skip_gate),
    )
    return _answer(request, result)


@router.post("/registry/rollback")
def rollback(
    request: Request,
    viewer: ActorDep,
    experiment_id: Annotated[str, Form()] = "",
    alias: Annotated[str, Form()] = "",
) -> Response:
    """Move an alias back to the checkpoint it held before its newest move."""
    exp_id = _int(experiment_id)
    if exp_id is None or not alias.strip():
        problem = "Roll back needs an experiment and an alias."
        return _render(request, experiment_id=exp_id, problem=problem, status=422)
    result = promotion.rollback(
        db_url=request.app.state.db_url,
        write_engine=request.app.state.write_engine,
        settings=request.app.state.settings,
        experiment_id=exp_id,
        alias=alias.strip().removeprefix("@"),
        actor=f"dashboard:{viewer.principal.name}",
        token_id=viewer.principal.token_id,
    )
    return _answer(request, result)


def _answer(request: Request, result: promotion.PromotionResult) -> Response:
    """Redirect to the page after a move; show the page with the reason after a refusal."""
    if result.moved:
        url = f"/registry?experiment={result.experiment_id}&moved={result.alias}"
        return RedirectResponse(f"{url}#alias-{result.experiment_id}-{result.alias}", 303)
    return _render(request, experiment_id=result.experiment_id, result=result, status=409)


def _render(
    request: Request,
    *,
    experiment_id: int | None,
    moved: str = "",
    problem: str | None = None,
    result: promotion.PromotionResult | None = None,
    status: int = 200,
) -> Response:
    with Session(request.app.state.engine) as session:
        page = queries.registry_page(session=session, experiment_id=experiment_id)
    if experiment_id is not None and not page.sections:
        problem = f"Experiment {experiment_id} not found; showing all experiments."
        experiment_id = None
        with Session(request.app.state.engine) as session:
            page = queries.registry_page(session=session)
    context: dict[str, Any] = {
        "page": page,
        "experiment_id": experiment_id,
        "moved": _moved_event(page, experiment_id, moved),
        "problem": problem,
        "result": result,
    }
    return render(request, "registry.html", context, status_code=status)


def _moved_event(
    page: queries.RegistryPage, experiment_id: int | None, alias: str
) -> queries.AliasView | None:
    """Return the alias named in `?moved=` (its newest event is what the flash shows)."""
    if not alias or experiment_id is None:
        return None
    for section in page.sections:
        for view in section.aliases:
            if view.alias.name == alias and view.history:
                return view
    return None


def _experiment_id(text: str) -> tuple[int | None, str | None]:
    if not text.strip():
        return None, None
    value = _int(text)
    if value is None:
        return None, f"'{text}' is not an experiment id; showing all experiments."
    return value, None


def _int(text: str) -> int | None:
    return parse_id(text)
