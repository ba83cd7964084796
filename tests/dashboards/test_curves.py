"""Reading training curves from a real MLflow store: the SQL path and the client path agree."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dashboards.curves import is_sql, load_series, metric_keys

N = 5000
RESUMED_STEP, RESUMED_VALUE = 100, 99.0


@dataclass
class Store:
    uri: str
    first: str  # has loss and eval_loss, a step logged twice and a NaN
    second: str  # has loss and learning_rate
    diverged: str  # its loss went to infinity at step 1


def _fill(uri: str) -> Store:
    """Log the same two runs into the MLflow store at `uri`."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("curves")
    first = client.create_run(experiment).info.run_id
    second = client.create_run(experiment).info.run_id
    a = [Metric("loss", 2.0 * math.exp(-s / 900) + 0.3, 1000 + s, s) for s in range(N)]
    a += [Metric("eval_loss", 2.5 - s / 4000, 1000 + s, s) for s in range(0, N, 50)]
    # The run resumed from a checkpoint and logged step 100 again, later: that value wins.
    a.append(Metric("loss", RESUMED_VALUE, 10_000_000, RESUMED_STEP))
    a.append(Metric("loss", math.nan, 10_000_001, N))
    b = [Metric("loss", 3.0 - s / 2500, 1000 + s, s) for s in range(N)]
    b += [Metric("learning_rate", 1e-3, 1000 + s, s) for s in range(0, N, 100)]
    diverged = client.create_run(experiment).info.run_id
    c = [Metric("loss", v, 1000 + s, s) for s, v in enumerate([1.0, math.inf, 2.0])]
    for run_id, metrics in ((first, a), (second, b), (diverged, c)):
        for i in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[i : i + 1000])
    return Store(uri=uri, first=first, second=second, diverged=diverged)


@pytest.fixture(scope="module")
def sql_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return _fill(f"sqlite:///{tmp_path_factory.mktemp('mlflow-sql') / 'mlflow.db'}")


@pytest.fixture(scope="module")
def file_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    # MLflow 3 refuses the file store unless asked; a user on one sets the same variable.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        root = tmp_path_factory.mktemp("mlflow-file") / "mlruns"
        yield _fill(root.as_uri())


def test_one_downsampled_series_per_run_and_key_in_argument_order(sql_store: Store) -> None:
    assert is_sql(sql_store.uri)
    series = load_series(sql_store.uri, [sql_store.second, sql_store.first], ["loss"])
    assert [(s.run_id, s.key) for s in series] == [
        (sql_store.second, "loss"),
        (sql_store.first, "loss"),
    ]
    for s in series:
        assert s.points == N
        assert 0 < len(s.x) == len(s.y) <= 2000
        assert s.x == sorted(s.x)
        assert (s.x[0], s.x[-1]) == (0.0, N - 1.0)
    both = load_series(sql_store.uri, [sql_store.first], ["eval_loss", "loss"])
    assert [s.key for s in both] == ["eval_loss", "loss"]
    assert both[0].points == N // 50 and both[0].x == [float(s) for s in range(0, N, 50)]


def test_last_value_at_a_step_wins_and_nan_is_skipped(sql_store: Store) -> None:
    (full,) = load_series(sql_store.uri, [sql_store.first], ["loss"], max_points=10 * N)
    assert len(full.x) == full.points == N
    assert full.y[full.x.index(RESUMED_STEP)] == RESUMED_VALUE
    assert float(N) not in full.x  # the NaN point
    assert all(math.isfinite(y) for y in full.y)


def test_missing_pairs_and_unknown_runs_give_no_series(sql_store: Store) -> None:
    series = load_series(sql_store.uri, [sql_store.first, "f" * 32], ["learning_rate", "loss"])
    assert [(s.run_id, s.key) for s in series] == [(sql_store.first, "loss")]
    assert load_series(sql_store.uri, [], ["loss"]) == []
    assert load_series(sql_store.uri, [sql_store.first], []) == []


def test_metric_keys(sql_store: Store) -> None:
    assert metric_keys(sql_store.uri, [sql_store.first]) == ["eval_loss", "loss"]
    assert metric_keys(sql_store.uri, [sql_store.first, sql_store.second]) == [
        "eval_loss",
        "learning_rate",
        "loss",
    ]
    assert metric_keys(sql_store.uri, []) == []


def test_store_without_mlflow_tables_has_no_curves(tmp_path: Path) -> None:
    empty = tmp_path / "mlflow.db"
    empty.touch()
    uri = f"sqlite:///{empty}"
    assert load_series(uri, ["a" * 32], ["loss"]) == []
    assert metric_keys(uri, ["a" * 32]) == []


def test_file_store_reads_the_same_curves_as_the_sql_store(
    sql_store: Store, file_store: Store
) -> None:
    assert not is_sql(file_store.uri)
    keys = ["loss", "eval_loss", "learning_rate"]
    for max_points in (2000, 10 * N):
        from_sql = load_series(
            sql_store.uri, [sql_store.first, sql_store.second], keys, max_points=max_points
        )
        from_file = load_series(
            file_store.uri, [file_store.first, file_store.second], keys, max_points=max_points
        )
        assert [(s.key, s.points, s.x, s.y) for s in from_file] == [
            (s.key, s.points, s.x, s.y) for s in from_sql
        ]
    assert metric_keys(file_store.uri, [file_store.first, file_store.second]) == metric_keys(
        sql_store.uri, [sql_store.first, sql_store.second]
    )


def test_file_store_unknown_run_gives_no_series(file_store: Store) -> None:
    assert load_series(file_store.uri, ["f" * 32], ["loss"]) == []
    assert metric_keys(file_store.uri, ["f" * 32]) == []


def test_infinite_values_are_skipped_on_both_paths(sql_store: Store, file_store: Store) -> None:
    (from_sql,) = load_series(sql_store.uri, [sql_store.diverged], ["loss"])
    (from_file,) = load_series(file_store.uri, [file_store.diverged], ["loss"])
    assert from_file.x == [0.0, 2.0]
    assert from_sql.x == from_file.x
