"""Gate test fixtures: checkpoints with evaluations recorded through a real registry.

`side` records one run with one checkpoint and the given evaluations (metrics plus
per-example scores) with the factories of `tests/factories.py`, and returns it as a
`ResolvedRef`, the form the gate takes. Names are unique, so tests share the module's
database.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from service.gate.refs import ResolvedRef
from service.models import EvaluationStatus
from service.registry import Registry
from tests.factories import make_checkpoint, make_evaluation, make_examples, make_run, unique

Scores = Sequence[dict[str, float]]
Side = Callable[..., ResolvedRef]


def record_side(
    registry: Registry,
    *,
    metrics: dict[str, dict[str, float]] | None = None,
    examples: dict[str, Scores] | None = None,
    ids: dict[str, Sequence[str]] | None = None,
    details: dict[str, Sequence[dict[str, Any]]] | None = None,
    failed: dict[str, str] | None = None,
    eval_loss: float | None = None,
) -> ResolvedRef:
    """Record run -> checkpoint -> evaluations and return the checkpoint as a ResolvedRef."""
    run = make_run(registry, name=unique("gate"), spec_text="")
    checkpoint = make_checkpoint(registry, run=run, step=10, eval_loss=eval_loss)
    metrics, examples = metrics or {}, examples or {}
    for evaluator in sorted(set(metrics) | set(examples)):
        make_evaluation(
            registry,
            checkpoint=checkpoint,
            evaluator=evaluator,
            metrics=metrics.get(evaluator, {}),
            examples=make_examples(
                examples.get(evaluator, []),
                ids=(ids or {}).get(evaluator),
                details=(details or {}).get(evaluator),
            ),
        )
    for evaluator, error in (failed or {}).items():
        make_evaluation(
            registry,
            checkpoint=checkpoint,
            evaluator=evaluator,
            status=EvaluationStatus.failed,
            error=error,
        )
    return ResolvedRef(checkpoint, registry.get_run(ref=str(run.id)), f"ckpt:{checkpoint.id}")


@pytest.fixture
def side(registry: Registry) -> Side:
    """Return a function that records one checkpoint with evaluations (see record_side)."""

    def make(**kwargs: Any) -> ResolvedRef:
        return record_side(registry, **kwargs)

    return make
