"""The plan of the dashboard benchmark's data: every run's experiment, status, quality,
checkpoint steps and MLflow id, decided once from a fixed seed so that the registry and
MLflow's tracking store (both filled by `dashboard_seed`) hold the same runs, and the
measuring (`dashboard_measure`) knows which two runs to compare and how many points they
have; plus `metrics_at`, the evaluation metrics both stores record for a checkpoint. It owns
no database access, no row formats and no timing.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

EXPERIMENTS = 20
#: Checkpoints a run has by status (a failed run died after its first save).
CHECKPOINTS = {"succeeded": 3, "running": 2, "failed": 1, "cancelled": 1, "queued": 0}
STATUS_WEIGHTS = {"succeeded": 84, "failed": 8, "running": 4, "queued": 2, "cancelled": 2}


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
