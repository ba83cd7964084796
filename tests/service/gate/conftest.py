"""Gate test fixtures: checkpoints with evaluations recorded through a real registry.

`side` records one run with one checkpoint and the given evaluations (metrics plus
per-example scores) through the `Registry` methods, and returns it as a `ResolvedRef`, the
form the gate takes. Names are unique, so tests share the module's database.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from service.gate.refs import ResolvedRef
from service.local import LocalRegistry
from service.models import (
    CheckpointCreate,
    EvalExampleCreate,
    EvaluationCreate,
    EvaluationStatus,
    RunCreate,
)

Scores = Sequence[dict[str, float]]
Side = Callable[..., ResolvedRef]


def record_side(
    registry: LocalRegistry,
    *,
    metrics: dict[str, dict[str, float]] | None = None,
    examples: dict[str, Scores] | None = None,
    ids: dict[str, Sequence[str]] | None = None,
    details: dict[str, Sequence[dict[str, Any]]] | None = None,
    failed: dict[str, str] | None = None,
    eval_loss: float | None = None,
) -> ResolvedRef:
    """Record run -> checkpoint -> evaluations and return the checkpoint as a ResolvedRef."""
    name = f"gate-{uuid.uuid4().hex[:10]}"
    experiment = registry.get_or_create_experiment(name=name)
    run = registry.create_run(
        run_in=RunCreate(name=name, experiment_id=experiment.id, spec_text="", spec_hash="0")
    )
    checkpoint = registry.record_checkpoint(
        checkpoint_in=CheckpointCreate(
            run_id=run.id,
            step=10,
            path=f"/tmp/{name}",
            sha256=hashlib.sha256(name.encode()).hexdigest(),
            eval_loss=eval_loss,
        )
    )
    metrics, examples = metrics or {}, examples or {}
    for evaluator in sorted(set(metrics) | set(examples)):
        rows = examples.get(evaluator, [])
        row_ids = (ids or {}).get(evaluator) or [f"ex{i}" for i in range(len(rows))]
        row_details = (details or {}).get(evaluator) or [{} for _ in rows]
        registry.record_evaluation(
            evaluation_in=EvaluationCreate(
                checkpoint_id=checkpoint.id,
                evaluator=evaluator,
                config_hash="0",
                metrics=metrics.get(evaluator, {}),
            ),
            examples=[
                EvalExampleCreate(position=i, example_id=str(x), scores=s, details=d)
                for i, (x, s, d) in enumerate(zip(row_ids, rows, row_details, strict=True))
            ],
        )
    for evaluator, error in (failed or {}).items():
        registry.record_evaluation(
            evaluation_in=EvaluationCreate(
                checkpoint_id=checkpoint.id,
                evaluator=evaluator,
                config_hash="0",
                status=EvaluationStatus.failed,
                error=error,
            )
        )
    return ResolvedRef(checkpoint, registry.get_run(ref=str(run.id)), f"ckpt:{checkpoint.id}")


@pytest.fixture
def side(registry: LocalRegistry) -> Side:
    """Return a function that records one checkpoint with evaluations (see record_side)."""

    def make(**kwargs: Any) -> ResolvedRef:
        return record_side(registry, **kwargs)

    return make
