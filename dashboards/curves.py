"""Training curves for the dashboard: read step metrics from MLflow, downsample with LTTB.

Owns reading metric histories (loss, eval_loss, learning_rate, ...) of one or more MLflow
runs and turning them into chart series of at most `lttb.MAX_POINTS` points. When the
tracking store is a database (SQLite or Postgres, the embedded default and the usual
server set-up) it reads MLflow's `metrics` table directly, one query per (run, key): MLflow's client
builds one Python entity per point, which costs far more at 50,000 points (see
`bench/bench_dashboard.py`). Other stores (a remote `http://` tracking server,
a file store) go through `MlflowClient.get_metric_history`. It never writes.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Engine, bindparam, create_engine, text
from sqlalchemy.exc import DBAPIError

from dashboards.lttb import MAX_POINTS, lttb
from service import db

logger = logging.getLogger("evalctl.dashboard")
SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")

# Unordered on purpose: MLflow's primary key starts with `key, timestamp`, so an ORDER BY
# step makes Postgres sort every point (on disk at 50,000); NumPy sorts faster here.
_HISTORY = text(
    "SELECT step, timestamp, value FROM metrics "
    "WHERE run_uuid = :run AND key = :key AND is_nan = :false"
)
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
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    keys: set[str] = set()
    for run_id in run_ids:
        try:
            keys.update(client.get_run(run_id).data.metrics)
        except MlflowException as exc:  # a deleted run or a store MLflow refuses
            logger.info("no MLflow run %s at %s: %s", run_id, tracking_uri, exc)
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
        raw = _client_history(tracking_uri, run_ids, keys)
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
    out: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    try:
        with _engine(uri).connect() as conn:
            for run_id in run_ids:
                for key in keys:
                    rows = conn.execute(_HISTORY, {"run": run_id, "key": key, "false": False})
                    # Plain tuples: NumPy probes each SQLAlchemy Row for the array
                    # protocol, which costs ~10x the fetch itself at 50,000 rows.
                    plain = [tuple(row) for row in rows]
                    points = np.array(plain, dtype=np.float64).reshape(-1, 3)
                    if len(points):
                        out[(run_id, key)] = _last_per_step_sorted(points)
    except DBAPIError as exc:  # no MLflow tables yet: nothing was logged
        logger.info("no MLflow metrics at %s: %s", uri, exc.orig)
        return {}
    return out


def _last_per_step_sorted(points: NDArray[np.float64]) -> tuple[list[float], list[float]]:
    """Sort (step, timestamp, value) rows; keep the last value logged at each step."""
    # MLflow's SQL store saves +-inf as +-max float: drop those with the NaNs.
    points = points[np.abs(points[:, 2]) < np.finfo(np.float64).max]
    order = np.lexsort((points[:, 1], points[:, 0]))  # by step, then timestamp
    step, value = points[order, 0], points[order, 2]
    last = np.ones(len(step), dtype=bool)
    last[:-1] = step[1:] != step[:-1]
    return step[last].tolist(), value[last].tolist()


def _client_history(
    uri: str, run_ids: Sequence[str], keys: Sequence[str]
) -> dict[tuple[str, str], tuple[list[float], list[float]]]:
    from mlflow.exceptions import MlflowException

    client = _client(uri)
    out = {}
    for run_id in run_ids:
        for key in keys:
            try:
                points = client.get_metric_history(run_id, key)
            except MlflowException as exc:
                logger.info("no MLflow history %s/%s at %s: %s", run_id, key, uri, exc)
                continue
            pairs = sorted((m.step, m.timestamp, m.value) for m in points)
            out[(run_id, key)] = _last_per_step((s, v) for s, _, v in pairs)
    return out


def _last_per_step(points: object) -> tuple[list[float], list[float]]:
    """Keep the last value logged at each step (a resumed run may log a step twice)."""
    xs: list[float] = []
    ys: list[float] = []
    for step, value in points:  # type: ignore[attr-defined]
        if value is None or not abs(value) < sys.float_info.max:
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
