"""One side of a gate comparison: a checkpoint's metrics and per-example scores.

Owns reading what the registry holds for one resolved checkpoint: the newest succeeded
evaluation per evaluator (a failed one is remembered so a rule can say why its metric is
missing), the flat `evaluator.key` metric table (plus the checkpoint's `eval_loss` and
`train_loss`), and each evaluator's per-example scores, loaded once and keyed by example
id. It does not judge anything (`service.gate.rules`) and never writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from service.gate.rule_spec import CHECKPOINT_METRICS
from service.models import EvaluationPublic, EvaluationStatus
from service.registry import ExampleScores, Registry


@dataclass
class Examples:
    """An evaluation's per-example rows by example id, in their recorded order."""

    by_id: dict[str, ExampleScores]

    def score_keys(self) -> set[str]:
        """Return every per-example score key present on at least one example."""
        keys: set[str] = set()
        for example in self.by_id.values():
            keys.update(example.scores)
        return keys


@dataclass
class GateSide:
    """What the gate knows about one checkpoint (`ref` is a `service.gate.refs.ResolvedRef`)."""

    registry: Registry
    ref: Any
    role: str = "candidate"  # or "baseline": how reasons name this side
    evaluations: dict[str, EvaluationPublic] = field(default_factory=dict)
    failed: dict[str, EvaluationPublic] = field(default_factory=dict)
    _examples: dict[str, Examples] = field(default_factory=dict)

    @classmethod
    def load(cls, registry: Registry, ref: Any, *, role: str = "candidate") -> GateSide:
        """Read the checkpoint's evaluations (newest succeeded one per evaluator)."""
        side = cls(registry=registry, ref=ref, role=role)
        side.refresh()
        return side

    def refresh(self) -> None:
        """Re-read the evaluations (after missing ones were run)."""
        self.evaluations.clear()
        self.failed.clear()
        self._examples.clear()
        rows = self.registry.list_evaluations(checkpoint_id=self.ref.checkpoint.id)
        for row in rows:  # oldest first: later rows win
            if row.status == EvaluationStatus.succeeded and not row.error:
                self.evaluations[row.evaluator] = row
            else:
                self.failed[row.evaluator] = row
        for name in self.evaluations:
            self.failed.pop(name, None)

    @property
    def label(self) -> str:
        """Return how reports name this side, e.g. 'run:3 (ckpt 12)'."""
        text = str(self.ref.label)
        checkpoint = self.ref.checkpoint.id
        return text if text == f"ckpt:{checkpoint}" else f"{text} (ckpt:{checkpoint})"

    def metrics(self) -> dict[str, float]:
        """Return every metric of this checkpoint as 'evaluator.key' -> value."""
        table: dict[str, float] = {}
        for name in CHECKPOINT_METRICS:
            value = getattr(self.ref.checkpoint, name, None)
            if value is not None:
                table[name] = float(value)
        for evaluator, evaluation in self.evaluations.items():
            for key, value in evaluation.metrics.items():
                table[f"{evaluator}.{key}"] = float(value)
        return table

    def metric(self, name: str) -> float | None:
        """Return one metric's value, or None when this checkpoint does not have it."""
        return self.metrics().get(name)

    def why_missing(self, name: str) -> str:
        """Return why `name` has no value here, as a phrase for a rule's reason."""
        evaluator = name.partition(".")[0]
        where = f"metric {name} missing on {self.role} {self.label}"
        if name in CHECKPOINT_METRICS:
            return f"{where} (not recorded for the checkpoint)"
        if evaluator in self.failed:
            return f"{where} (evaluation {evaluator} failed: {self.failed[evaluator].error})"
        if evaluator not in self.evaluations:
            return f"{where} (no {evaluator} evaluation)"
        return where

    def has_evaluator(self, evaluator: str) -> bool:
        """Return whether a succeeded evaluation of `evaluator` is recorded."""
        return evaluator in self.evaluations

    def examples(self, evaluator: str) -> Examples | None:
        """Return the per-example rows of `evaluator`'s evaluation, loaded once (None if none)."""
        evaluation = self.evaluations.get(evaluator)
        if evaluation is None:
            return None
        if evaluator not in self._examples:
            rows = self.registry.list_example_scores(evaluation_id=evaluation.id)
            self._examples[evaluator] = Examples({row.example_id: row for row in rows})
        return self._examples[evaluator]

    def score_keys(self) -> set[str]:
        """Return every per-example score as 'evaluator.key' over the loaded evaluations."""
        keys: set[str] = set()
        for evaluator in self.evaluations:
            found = self.examples(evaluator)
            if found is not None:
                keys.update(f"{evaluator}.{k}" for k in found.score_keys())
        return keys
