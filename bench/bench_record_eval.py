"""Benchmark: recording one evaluation with 10,000 per-example scores, ours vs MLflow.

Ours: `Registry.record_evaluation` with 10,000 `EvalExampleCreate` rows, through the
LocalRegistry on a fresh SQLite file and, when the service exists, through the
RemoteRegistry to `evalctl serve`'s app (uvicorn on loopback, in a thread, fresh SQLite).
MLflow: the same 10,000 values as one metric with step = example index, sent with
`MlflowClient.log_batch` in batches of MLflow's maximum (1,000 metrics), to one run of a
fresh SQLite tracking store. Each side is timed `--repeats` times (a new checkpoint, or a
new metric key, each time) and the median is reported. Goal: ours >= 5x faster.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _shared import append_result, machine_info, print_table


def _median_seconds(fn: Callable[[int], None], repeats: int) -> float:
    times = []
    for index in range(repeats):
        start = time.perf_counter()
        fn(index)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_registry(registry: Any, values: list[float], repeats: int) -> float:
    """Return the median seconds of one record_evaluation with len(values) examples."""
    from service.models import EvalExampleCreate
    from tests.factories import make_checkpoint, make_evaluation, make_experiment, make_run

    experiment = make_experiment(registry, name="bench-record-eval")
    run = make_run(registry, experiment=experiment, name="bench", spec_text="")

    def record(index: int) -> None:
        checkpoint = make_checkpoint(registry, run=run, step=index + 1)
        examples = [
            EvalExampleCreate(position=i, example_id=f"ex-{i}", scores={"score": v})
            for i, v in enumerate(values)
        ]
        make_evaluation(
            registry,
            checkpoint=checkpoint,
            evaluator="bench",
            config_hash="0" * 64,
            metrics={"score": statistics.fmean(values)},
            n_examples=len(values),
            examples=examples,
        )

    return _median_seconds(record, repeats)


def time_mlflow(tracking_uri: str, values: list[float], repeats: int) -> float:
    """Return the median seconds of logging the values as one stepped metric via log_batch."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient
    from mlflow.utils.validation import MAX_METRICS_PER_BATCH

    client = MlflowClient(tracking_uri=tracking_uri)
    run_id = client.create_run(client.create_experiment("bench-record-eval")).info.run_id

    def record(index: int) -> None:
        now = int(time.time() * 1000)
        metrics = [Metric(f"score_{index}", v, now, i) for i, v in enumerate(values)]
        for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
            client.log_batch(run_id, metrics=metrics[start : start + MAX_METRICS_PER_BATCH])

    return _median_seconds(record, repeats)


@contextmanager
def served_registry(home: Path) -> Iterator[Any]:
    """Yield a RemoteRegistry talking to the service app on a loopback port."""
    import uvicorn

    from runners.launch import free_port
    from service.app import create_app
    from service.remote import RemoteRegistry
    from service.settings import Settings, StorageSettings
    from tests.factories import CHECKPOINT_ROOT

    # time_registry records checkpoints under CHECKPOINT_ROOT: a storage root of this server.
    settings = Settings(home=home, storage=StorageSettings(roots=[CHECKPOINT_ROOT]))
    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the service did not start")
        time.sleep(0.05)
    try:
        token = settings.admin_token_path.read_text().strip()
        yield RemoteRegistry(f"http://127.0.0.1:{port}", token)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _has_service() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("service.app", "service.remote"))


def main() -> None:
    """Time both sides, print the table and append the result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from service.local import LocalRegistry
    from service.settings import Settings

    rng = random.Random(0)
    values = [rng.random() for _ in range(args.examples)]
    tmp = Path(tempfile.mkdtemp(prefix="evalctl-bench-record-"))
    local = LocalRegistry(Settings(home=tmp / "local").db_url)
    seconds = {"LocalRegistry (SQLite)": time_registry(local, values, args.repeats)}
    if _has_service():
        with served_registry(tmp / "served") as remote:
            seconds["RemoteRegistry (HTTP, SQLite)"] = time_registry(remote, values, args.repeats)
    mlflow_s = time_mlflow(f"sqlite:///{tmp / 'mlflow.db'}", values, args.repeats)
    seconds["MLflow log_batch (SQLite)"] = mlflow_s

    rows = [[name, s * 1000, args.examples / s, mlflow_s / s] for name, s in seconds.items()]
    print(f"one evaluation, {args.examples:,} per-example scores, median of {args.repeats}")
    print_table(["backend", "ms", "scores/s", "x faster than MLflow"], rows)
    append_result(
        {
            "bench": "record_eval",
            "examples": args.examples,
            "repeats": args.repeats,
            "median_s": seconds,
            "speedup_vs_mlflow": {k: mlflow_s / v for k, v in seconds.items()},
            "machine": machine_info(),
        }
    )


if __name__ == "__main__":
    main()
