"""Training curves for the dashboard: read step metrics from MLflow, downsample with LTTB.

Owns reading metric histories (loss, eval_loss, learning_rate, ...) of one or more MLflow
runs and turning them into chart series of at most `lttb.MAX_POINTS` points. When the
tracking store is a database (SQLite or Postgres, the embedded default and the usual
server set-up) it reads MLflow's `metrics` table with one SQL query: MLflow's client builds
one Python entity per point and one call per (run, key), which costs seconds at 50,000
points (see `bench/bench_dashboard.py`). Other stores (a remote `http://` tracking server,
a file store) go through `MlflowClient.get_metric_history`. It never writes.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Engine, bindparam, create_engine, text
from sqlalchemy.exc import DBAPIError

from dashboards.lttb import MAX_POINTS, lttb
from service import db

logger = logging.getLogger("evalctl.dashboard")
SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")

_HISTORY = text(
    "SELECT run_uuid, key, step, value FROM metrics "
    "WHERE run_uuid IN :runs AND key IN :keys AND is_nan = :false "
    "ORDER BY run_uuid, key, step, timestamp"
).bindparams(bindparam("runs", expanding=True), bindparam("keys", expanding=True))
_KEYS = text(
    "SELECT DISTINCT key FROM latest_metrics WHERE run_uuid IN :runs ORDER BY key"
).bindparams(bindparam("runs", expanding=True))


@dataclass
class Series:
    """One curve: a run's metric by step (already downsampled) and its full length."""

    run_id: str
    key: str
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    points: int = 0


def is_sql(uri: str) -> bool:
    """Return whether the tracking URI is a database MLflow keeps its tables in."""
    return uri.split(":", 1)[0].split("+", 1)[0] in SQL_SCHEMES


@functools.cache
def _engine(uri: str) -> Engine:
    return create_engine(db.normalize_url(uri), pool_pre_ping=True)


def metric_keys(tracking_uri: str, run_ids: Sequence[str]) -> list[str]:
    """Return the metric keys logged on any of the runs, sorted."""
    if not run_ids:
        return []
    if is_sql(tracking_uri):
        try:
            with _engine(tracking_uri).connect() as conn:
                return [row[0] for row in conn.execute(_KEYS, {"runs": list(run_ids)})]
        except DBAPIError as exc:  # no MLflow tables yet: nothing was logged
            logger.info("no MLflow metrics at %s: %s", tracking_uri, exc.orig)
            return []
    client = _client(tracking_uri)
    keys: set[str] = set()
    for run_id in run_ids:
        keys.update(client.get_run(run_id).data.metrics)
    return sorted(keys)


def load_series(
    tracking_uri: str,
    run_ids: Sequence[str],
    keys: Sequence[str],
    *,
    max_points: int = MAX_POINTS,
) -> list[Series]:
    """Return one downsampled series per (run, key) that has points, in argument order."""
    if not run_ids or not keys:
        return []
    raw: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    if is_sql(tracking_uri):
        raw = _sql_history(tracking_uri, run_ids, keys)
    else:
        client = _client(tracking_uri)
        for run_id in run_ids:
            for key in keys:
                points = client.get_metric_history(run_id, key)
                pairs = sorted((m.step, m.timestamp, m.value) for m in points)
                raw[(run_id, key)] = _last_per_step((s, v) for s, _, v in pairs)
    out = []
    for run_id in run_ids:
        for key in keys:
            xs, ys = raw.get((run_id, key), ([], []))
            if not xs:
                continue
            dx, dy = lttb(xs, ys, max_points)
            out.append(Series(run_id=run_id, key=key, x=dx, y=dy, points=len(xs)))
    return out


def _sql_history(
    uri: str, run_ids: Sequence[str], keys: Sequence[str]
) -> dict[tuple[str, str], tuple[list[float], list[float]]]:
    grouped: dict[tuple[str, str], list[tuple[float, float]]] = {}
    try:
        with _engine(uri).connect() as conn:
            rows = conn.execute(
                _HISTORY, {"runs": list(run_ids), "keys": list(keys), "false": False}
            )
            for run_id, key, step, value in rows:
                grouped.setdefault((run_id, key), []).append((step, value))
    except DBAPIError as exc:
        logger.info("no MLflow metrics at %s: %s", uri, exc.orig)
        return {}
    return {name: _last_per_step(points) for name, points in grouped.items()}


def _last_per_step(points: object) -> tuple[list[float], list[float]]:
    """Keep the last value logged at each step (a resumed run may log a step twice)."""
    xs: list[float] = []
    ys: list[float] = []
    for step, value in points:  # type: ignore[attr-defined]
        if value is None or not math.isfinite(value):
            continue
        if xs and xs[-1] == step:
            ys[-1] = float(value)
        else:
            xs.append(float(step))
            ys.append(float(value))
    return xs, ys


def _client(uri: str):  # type: ignore[no-untyped-def]
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)
