"""The run page (`/runs/{id}`): lineage, training curves, checkpoints, spec, job and log.

Owns what one run looks like: where it came from (hashes, git sha, base model, data),
how training went (curves read from MLflow and downsampled server-side), what each
checkpoint scored (linking to the evaluation pages), the spec highlighted with Pygments,
the jobs that ran it and the tail of its log (the job's log in the database, else the
`run.log` a local run writes under `EVALCTL_HOME/runs/<id>/`). Database reads are
`dashboards.queries.run`; MLflow reads are `dashboards.curves`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import Request, Response
from markupsafe import Markup
from sqlmodel import Session

from dashboards import curves
from dashboards.queries import run as q
from dashboards.session import ViewerDep
from dashboards.web import page_router, parse_id, render
from service.errors import NotFoundError
from service.settings import Settings

logger = logging.getLogger("evalctl.dashboard")
router = page_router()
#: Curves drawn when the run logged them, in this order.
CURVE_KEYS = ("loss", "eval_loss", "learning_rate", "grad_norm")
#: How much of a local log file is read to find its last lines.
TAIL_BYTES = 1 << 20


def training_charts(tracking_uri: str, mlflow_run_id: str | None) -> tuple[list[Any], str | None]:
    """Return one chart per logged curve (downsampled), or a message saying why none."""
    if not mlflow_run_id:
        return [], "This run has no MLflow run, so no training curves."
    try:
        logged = curves.metric_keys(tracking_uri, [mlflow_run_id])
        keys = [key for key in CURVE_KEYS if key in logged]
        series = curves.load_series(tracking_uri, [mlflow_run_id], keys)
    except Exception as exc:  # MLflow is another system: show why, keep the page
        logger.warning("cannot read curves of MLflow run %s: %s", mlflow_run_id, exc)
        return [], f"Could not read the training curves from MLflow: {exc}"
    charts = []
    for s in series:
        shown = len(s.x)
        points = f"{shown} points" if shown == s.points else f"{shown} of {s.points} points"
        charts.append(
            {
                "id": f"curve-{s.key}",
                "title": s.key,
                "x_label": "step",
                "y_label": s.key,
                "series": [{"label": f"{s.key} ({points})", "x": s.x, "y": s.y}],
            }
        )
    return charts, None if charts else "No training curves were logged."


def highlight_spec(text: str) -> Markup:
    """Return the spec as highlighted HTML spans (YAML), to go inside <pre><code>."""
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import YamlLexer

    from service.spec_loader import MAX_SPEC_BYTES

    if len(text) > MAX_SPEC_BYTES:  # no spec is this large: show its start, unhighlighted
        note = f"\n# ... cut: the stored spec has {len(text)} characters"
        return Markup.escape(text[:MAX_SPEC_BYTES] + note)
    # Safe as markup: Pygments HTML-escapes the spec text it wraps in spans.
    return Markup(highlight(text, YamlLexer(), HtmlFormatter(nowrap=True)))


def tail_file(path: Path, lines: int = q.LOG_LINES) -> list[str] | None:
    """Return the last `lines` lines of a text file, or None when it does not exist."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(max(0, size - TAIL_BYTES))
            data = handle.read()
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return None
    text = data.decode("utf-8", errors="replace").splitlines()
    if size > TAIL_BYTES:
        text = text[1:]  # the first line read is cut
    return text[-lines:]


def _log(session: Session, settings: Settings, run_id: int, jobs: list[q.JobRow]) -> dict[str, Any]:
    """Return the log lines to show and where they came from."""
    if jobs and jobs[0].job.id is not None:
        lines = q.job_log_tail(session=session, job_id=jobs[0].job.id)
        if lines:
            return {"lines": lines, "source": f"job #{jobs[0].job.id}"}
    path = settings.home_dir / "runs" / str(run_id) / "run.log"
    lines = tail_file(path) or []
    return {"lines": lines, "source": str(path) if lines else None}


def _run_id(text: str) -> int:
    run_id = parse_id(text)
    if run_id is None:
        raise NotFoundError(f"Run '{text}' not found: run ids are numbers.")
    return run_id


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: str, viewer: ViewerDep) -> Response:
    """Show one run: lineage, curves, checkpoints, spec, jobs and log."""
    settings: Settings = request.app.state.settings
    rid = _run_id(run_id)
    with Session(request.app.state.engine) as session:
        run, experiment = q.get_run(session=session, run_id=rid)
        checkpoints = q.list_checkpoints(session=session, run_id=rid)
        jobs = q.list_jobs(session=session, run_id=rid)
        log = _log(session, settings, rid, jobs)
    charts, curves_message = training_charts(settings.tracking_uri, run.mlflow_run_id)
    context = {
        "run": run,
        "experiment": experiment,
        "checkpoints": checkpoints,
        "metric_columns": q.metric_columns(checkpoints),
        "evaluators": sorted({name for row in checkpoints for name in row.evaluations}),
        "charts": charts,
        "curves_message": curves_message,
        "spec_html": highlight_spec(run.spec_text),
        "jobs": jobs,
        "log": log,
    }
    return render(request, "run.html", context)
