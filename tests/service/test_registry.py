"""Registry behaviour a runner or the CLI relies on, for both transports.

Every test runs against `LocalRegistry` on SQLite and on Postgres and against
`RemoteRegistry` talking to a real `evalctl serve` (fresh SQLite) on a loopback port, so
the two implementations of `service.registry.Registry` cannot drift apart. Tests that
need the local database itself (several processes, `open_registry`) say so.
"""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy.exc import StatementError

from service.db import current_revision, dispose_engines, head_revisions
from service.errors import EvalctlError, NotFoundError
from service.local import LocalRegistry
from service.models import (
    CheckpointCreate,
    CheckpointPublic,
    EvalExampleCreate,
    EvaluationCreate,
    ExperimentPublic,
    RunCreate,
    RunPublic,
    RunStatus,
    RunUpdate,
)
from service.registry import Registry, open_registry
from service.remote import RemoteRegistry
from tests.helpers import start_server
from tests.service.conftest import BACKENDS, _database

REPO_ROOT = Path(__file__).resolve().parents[2]
UNICODE = 'ünïcødé — 日本語 🚀 "quoted" \\ back'


@pytest.fixture(scope="module", params=[*BACKENDS, pytest.param("remote")])
def registry(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registry]:
    """Return a registry shared by this module's tests: local (SQLite, Postgres) or remote."""
    folder = tmp_path_factory.mktemp("registry")
    if request.param == "remote":
        server = start_server(folder / "server", storage_roots=["/ckpt"])  # checkpoint_in()
        try:
            yield RemoteRegistry(server.url, server.admin_token, retry_for=5)
        finally:
            server.stop()
        return
    with _database(request.param, folder) as url:
        yield LocalRegistry(url)


@pytest.fixture
def experiment(registry: Registry, unique_name: str) -> ExperimentPublic:
    return registry.get_or_create_experiment(name=unique_name)


def make_run(registry: Registry, experiment: ExperimentPublic, name: str, **kw) -> RunPublic:
    fields = {"spec_text": "name: x\n", "spec_hash": "a" * 64} | kw
    return registry.create_run(run_in=RunCreate(name=name, experiment_id=experiment.id, **fields))


def checkpoint_in(run: RunPublic, step: int = 10, sha: str = "c" * 64) -> CheckpointCreate:
    return CheckpointCreate(run_id=run.id, step=step, path=f"/ckpt/{step}", sha256=sha)


def assert_aware_utc(value: datetime | None) -> None:
    assert value is not None
    assert value.utcoffset() == timedelta(0), value


# --- experiments and runs --------------------------------------------------------------


def test_get_or_create_experiment_returns_the_same_experiment(
    registry: Registry, unique_name: str
) -> None:
    first = registry.get_or_create_experiment(name=unique_name)
    again = registry.get_or_create_experiment(name=unique_name)
    other = registry.get_or_create_experiment(name=unique_name + "-other")
    assert again.id == first.id
    assert other.id != first.id
    assert_aware_utc(first.created_at)
    assert unique_name in [e.name for e in registry.list_experiments()]


def test_run_round_trips_json_fields_and_aware_timestamps(
    registry: Registry, experiment: ExperimentPublic
) -> None:
    before = datetime.now(UTC)
    tags = {"note": UNICODE, "empty": ""}
    hashes = {"train.jsonl": "d" * 64, "données/éval.jsonl": "e" * 64}
    run = make_run(registry, experiment, "r", tags=tags, dataset_hashes=hashes)
    fetched = registry.get_run(ref=str(run.id))
    assert fetched.tags == tags
    assert fetched.dataset_hashes == hashes
    assert fetched.status is RunStatus.queued
    assert_aware_utc(fetched.created_at)
    assert before - timedelta(seconds=5) <= fetched.created_at <= datetime.now(UTC)
    assert fetched.started_at is None


def test_update_run_changes_only_the_fields_it_sets(
    registry: Registry, experiment: ExperimentPublic
) -> None:
    run = make_run(registry, experiment, "r", tags={"k": "v"})
    started = datetime(2026, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    updated = registry.update_run(
        run_id=run.id, run_update=RunUpdate(status=RunStatus.running, started_at=started)
    )
    assert updated.status is RunStatus.running
    assert updated.started_at == started  # the same instant ...
    assert_aware_utc(updated.started_at)  # ... returned in UTC
    assert updated.tags == {"k": "v"}
    assert updated.finished_at is None
    done = registry.update_run(
        run_id=run.id, run_update=RunUpdate(status="failed", failure_reason=UNICODE)
    )
    assert (done.status, done.failure_reason, done.started_at) == ("failed", UNICODE, started)
    assert registry.get_run(ref=str(run.id)) == done


def test_get_run_by_name_returns_the_newest(
    registry: Registry, experiment: ExperimentPublic, unique_name: str
) -> None:
    older = make_run(registry, experiment, unique_name)
    newer = make_run(registry, experiment, unique_name)
    assert registry.get_run(ref=unique_name).id == newer.id
    assert registry.get_run(ref=str(older.id)).id == older.id


def test_best_checkpoint_must_belong_to_the_run(
    registry: Registry, experiment: ExperimentPublic
) -> None:
    run, other = make_run(registry, experiment, "a"), make_run(registry, experiment, "b")
    mine = registry.record_checkpoint(checkpoint_in=checkpoint_in(run))
    assert (
        registry.update_run(
            run_id=run.id, run_update=RunUpdate(best_checkpoint_id=mine.id)
        ).best_checkpoint_id
        == mine.id
    )
    with pytest.raises(EvalctlError, match=f"belongs to run {run.id}, not run {other.id}"):
        registry.update_run(run_id=other.id, run_update=RunUpdate(best_checkpoint_id=mine.id))


def test_list_runs_newest_first_with_filters_and_count(
    registry: Registry, unique_name: str
) -> None:
    experiment = registry.get_or_create_experiment(name=unique_name)
    elsewhere = registry.get_or_create_experiment(name=unique_name + "-elsewhere")
    runs = [make_run(registry, experiment, f"run-{i}") for i in range(5)]
    make_run(registry, elsewhere, "not-mine")
    for run in runs[1::2]:
        registry.update_run(run_id=run.id, run_update=RunUpdate(status=RunStatus.failed))

    listed = registry.list_runs(experiment=unique_name)
    assert listed.count == 5
    assert [r.name for r in listed.data] == ["run-4", "run-3", "run-2", "run-1", "run-0"]

    page = registry.list_runs(experiment=unique_name, limit=2, offset=1)
    assert page.count == 5
    assert [r.name for r in page.data] == ["run-3", "run-2"]

    failed = registry.list_runs(experiment=unique_name, status=RunStatus.failed)
    assert failed.count == 2
    assert [r.name for r in failed.data] == ["run-3", "run-1"]


# --- checkpoints -----------------------------------------------------------------------


def test_checkpoint_is_idempotent_on_run_step_and_hash(
    registry: Registry, experiment: ExperimentPublic
) -> None:
    run = make_run(registry, experiment, "r")
    late = registry.record_checkpoint(checkpoint_in=checkpoint_in(run, step=20))
    first = registry.record_checkpoint(checkpoint_in=checkpoint_in(run, step=10))
    again = registry.record_checkpoint(checkpoint_in=checkpoint_in(run, step=10))
    rehashed = registry.record_checkpoint(checkpoint_in=checkpoint_in(run, step=10, sha="f" * 64))
    assert again == first
    assert rehashed.id != first.id
    listed = registry.list_checkpoints(run_id=run.id)
    assert [c.id for c in listed] == [first.id, rehashed.id, late.id]  # by step
    assert registry.get_checkpoint(checkpoint_id=first.id) == first
    assert_aware_utc(first.created_at)


def test_concurrent_identical_checkpoints_make_one_row(
    registry: Registry, experiment: ExperimentPublic
) -> None:
    run = make_run(registry, experiment, "r")
    start = threading.Barrier(8)

    def record(_: int) -> CheckpointPublic:
        start.wait()
        return registry.record_checkpoint(checkpoint_in=checkpoint_in(run, step=5))

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(record, range(8)))
    assert len({c.id for c in results}) == 1
    assert len(registry.list_checkpoints(run_id=run.id)) == 1


def test_several_processes_write_to_one_database(registry: Registry, unique_name: str) -> None:
    if not isinstance(registry, LocalRegistry):
        pytest.skip("several processes on one database: the local transport's concern")
    script = textwrap.dedent(
        """
        import sys
        from service.local import LocalRegistry
        from service.models import CheckpointCreate, RunCreate
        registry = LocalRegistry(sys.argv[1])
        experiment = registry.get_or_create_experiment(name=sys.argv[2])
        run = registry.create_run(run_in=RunCreate(
            name=sys.argv[3], experiment_id=experiment.id, spec_text="", spec_hash=""))
        for step in range(40):
            registry.record_checkpoint(checkpoint_in=CheckpointCreate(
                run_id=run.id, step=step, path="p", sha256="s"))
            registry.record_checkpoint(checkpoint_in=CheckpointCreate(
                run_id=run.id, step=step, path="p", sha256="s"))
        """
    )
    url = registry.engine.url.render_as_string(hide_password=False)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, url, unique_name, f"worker-{i}"],
            cwd=REPO_ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
    runs = registry.list_runs(experiment=unique_name)
    assert runs.count == 3
    for run in runs.data:
        assert len(registry.list_checkpoints(run_id=run.id)) == 40


# --- evaluations -----------------------------------------------------------------------


def test_evaluation_with_10000_examples_round_trips_in_order(
    registry: Registry, experiment: ExperimentPublic
) -> None:
    run = make_run(registry, experiment, "r")
    checkpoint = registry.record_checkpoint(checkpoint_in=checkpoint_in(run))
    examples = [
        EvalExampleCreate(
            position=i,
            example_id=f"ex-{i:05d}",
            scores={"exact": float(i % 2), "f1": i / 10_000},
            details={"prediction": f"{UNICODE} {i}", "tokens": [i, None, True], "n": {"d": 1.5}},
        )
        for i in range(10_000)
    ]
    shuffled = random.Random(0).sample(examples, k=len(examples))
    evaluation = registry.record_evaluation(
        evaluation_in=EvaluationCreate(
            checkpoint_id=checkpoint.id,
            evaluator="json_schema",
            config_hash="b" * 64,
            metrics={"exact": 0.5, "é_metric": 1.0},
        ),
        examples=shuffled,
    )
    assert evaluation.n_examples == 10_000
    assert evaluation.metrics == {"exact": 0.5, "é_metric": 1.0}
    assert_aware_utc(evaluation.created_at)

    stored = registry.list_examples(evaluation_id=evaluation.id)
    assert stored.count == 10_000
    assert [e.model_dump(exclude={"id", "evaluation_id"}) for e in stored.data] == [
        e.model_dump() for e in examples
    ]
    page = registry.list_examples(evaluation_id=evaluation.id, limit=100, offset=9_950)
    assert page.count == 10_000
    assert [e.position for e in page.data] == list(range(9_950, 10_000))

    assert [e.id for e in registry.list_evaluations(run_id=run.id)] == [evaluation.id]
    assert registry.list_evaluations(checkpoint_id=checkpoint.id) == [evaluation]


def test_failed_evaluation_write_leaves_nothing_behind(
    registry: Registry, experiment: ExperimentPublic
) -> None:
    run = make_run(registry, experiment, "r")
    checkpoint = registry.record_checkpoint(checkpoint_in=checkpoint_in(run))
    good = EvalExampleCreate(position=0, example_id="ok", scores={"s": 1.0})
    unstorable = EvalExampleCreate(position=1, example_id="bad", details={"x": {1, 2}})
    evaluation_in = EvaluationCreate(
        checkpoint_id=checkpoint.id, evaluator="json_schema", config_hash="b" * 64
    )
    # A set is not JSON: the insert fails after the evaluation row was written. (SQLAlchemy
    # wraps the TypeError on SQLite; psycopg raises it as is.)
    with pytest.raises((TypeError, StatementError), match="not JSON serializable"):
        registry.record_evaluation(evaluation_in=evaluation_in, examples=[good, unstorable])
    nan = EvalExampleCreate(position=0, example_id="nan", scores={"s": float("nan")})
    # The database refuses NaN (local); JSON cannot carry it (remote, before sending).
    with pytest.raises(ValueError, match=r"example 'nan' scores: s not finite|not JSON compliant"):
        registry.record_evaluation(evaluation_in=evaluation_in, examples=[nan])
    inf = EvalExampleCreate(position=0, example_id="inf", details={"logprob": float("-inf")})
    with pytest.raises((ValueError, StatementError), match="not JSON compliant"):
        registry.record_evaluation(evaluation_in=evaluation_in, examples=[good, inf])
    assert registry.list_evaluations(checkpoint_id=checkpoint.id) == []


# --- errors ----------------------------------------------------------------------------


def test_unknown_ids_and_names_raise_one_line_not_found(
    registry: Registry, experiment: ExperimentPublic, unique_name: str
) -> None:
    missing = 987_654_321
    cases = [
        (f"run '{unique_name}-x' not found", lambda: registry.get_run(ref=f"{unique_name}-x")),
        (f"run {missing} not found", lambda: registry.get_run(ref=str(missing))),
        (
            f"run {missing} not found",
            lambda: registry.update_run(run_id=missing, run_update=RunUpdate(status="failed")),
        ),
        (f"run {missing} not found", lambda: registry.list_checkpoints(run_id=missing)),
        (f"checkpoint {missing} not found", lambda: registry.get_checkpoint(checkpoint_id=missing)),
        (f"evaluation {missing} not found", lambda: registry.list_examples(evaluation_id=missing)),
        (
            f"experiment {missing} not found",
            lambda: registry.create_run(
                run_in=RunCreate(name="r", experiment_id=missing, spec_text="", spec_hash="")
            ),
        ),
        (
            f"checkpoint {missing} not found",
            lambda: registry.record_evaluation(
                evaluation_in=EvaluationCreate(checkpoint_id=missing, evaluator="e", config_hash="")
            ),
        ),
    ]
    for message, call in cases:
        with pytest.raises(NotFoundError) as caught:
            call()
        assert str(caught.value) == message

    typo = unique_name[:-1] + "X"
    with pytest.raises(NotFoundError, match=f"Did you mean '{unique_name}'"):
        registry.list_runs(experiment=typo)


def test_open_registry_defaults_to_sqlite_under_evalctl_home(evalctl_home: Path) -> None:
    registry = open_registry()
    assert registry.get_or_create_experiment(name="default").id == 1
    database = evalctl_home / "evalctl.db"
    assert database.is_file()
    assert current_revision(f"sqlite:///{database}") in head_revisions()
    dispose_engines(registry.url)


def test_example_scores_read_fast_with_cluster_ids(
    registry: Registry, experiment: ExperimentPublic
) -> None:
    run = make_run(registry, experiment, "scores")
    checkpoint = registry.record_checkpoint(checkpoint_in=checkpoint_in(run))
    examples = [
        EvalExampleCreate(
            position=i,
            example_id=f"q{i}",
            scores={"correct": float(i % 2)},
            details={"output": f"{UNICODE} {i}", **({"cluster": f"doc-{i // 3}"} if i else {})},
        )
        for i in range(7)
    ]
    evaluation = registry.record_evaluation(
        evaluation_in=EvaluationCreate(
            checkpoint_id=checkpoint.id, evaluator="classification", config_hash="d" * 64
        ),
        examples=examples,
    )
    rows = registry.list_example_scores(evaluation_id=evaluation.id)
    assert [r.example_id for r in rows] == [f"q{i}" for i in range(7)]
    assert [r.scores["correct"] for r in rows] == [float(i % 2) for i in range(7)]
    assert [r.cluster for r in rows] == [None] + [f"doc-{i // 3}" for i in range(1, 7)]
