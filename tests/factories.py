"""The one data vocabulary of the tests: experiment -> run -> checkpoint -> evaluation.

Each `make_*` records one row through the `Registry` interface (so it works on a
`LocalRegistry` and on a `RemoteRegistry` alike), creates the parents it is not given, and
names what it makes uniquely, so tests and benchmarks share databases and never wipe them.
Every field has a default a test can override by keyword. Checkpoint paths default to
`CHECKPOINT_ROOT/<run name>/checkpoint-<step>`: a server that a remote registry talks to
must list that root in `storage_roots`. `Factory` binds the functions to one registry (the
`factory` fixture in tests/conftest.py). It owns no server (see `tests/live.py`).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from service.models import (
    AliasPublic,
    CheckpointCreate,
    CheckpointPublic,
    EvalExampleCreate,
    EvaluationCreate,
    EvaluationPublic,
    ExperimentPublic,
    RunCreate,
    RunPublic,
)
from service.registry import Registry

#: Where checkpoints recorded by the factories live (a storage root of test servers).
CHECKPOINT_ROOT = "/ckpts"


def unique(prefix: str = "t") -> str:
    """Return `prefix-<10 hex digits>`, a name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_experiment(registry: Registry, *, name: str | None = None) -> ExperimentPublic:
    """Return the experiment `name` (default: a unique one), creating it if needed."""
    return registry.get_or_create_experiment(name=name or unique("exp"))


def make_run(
    registry: Registry,
    *,
    experiment: ExperimentPublic | None = None,
    name: str | None = None,
    spec_text: str = "name: r\n",
    spec_hash: str = "0" * 64,
    **fields: Any,
) -> RunPublic:
    """Create a run (in a new experiment unless given); `fields` are other RunCreate fields."""
    experiment = experiment or make_experiment(registry)
    run_in = RunCreate(
        name=name or unique("run"),
        experiment_id=experiment.id,
        spec_text=spec_text,
        spec_hash=spec_hash,
        **fields,
    )
    return registry.create_run(run_in=run_in)


def make_checkpoint(
    registry: Registry,
    *,
    run: RunPublic | None = None,
    step: int = 10,
    path: str | None = None,
    sha256: str | None = None,
    **fields: Any,
) -> CheckpointPublic:
    """Record a checkpoint of `run` (a new one unless given) at `step`.

    The default path lies under CHECKPOINT_ROOT and the default hash is derived from the
    run and step, so recording the same step twice replays the first record.
    """
    run = run or make_run(registry)
    checkpoint_in = CheckpointCreate(
        run_id=run.id,
        step=step,
        path=path or f"{CHECKPOINT_ROOT}/{run.name}/checkpoint-{step}",
        sha256=sha256 or hashlib.sha256(f"{run.id}/{run.name}/{step}".encode()).hexdigest(),
        **fields,
    )
    return registry.record_checkpoint(checkpoint_in=checkpoint_in)


def make_examples(
    scores: Sequence[Mapping[str, float]],
    *,
    ids: Sequence[str] | None = None,
    details: Sequence[Mapping[str, Any]] | None = None,
) -> list[EvalExampleCreate]:
    """Return per-example rows in order; ids default to `ex0`, `ex1`, ..."""
    ids = ids or [f"ex{i}" for i in range(len(scores))]
    details = details or [{} for _ in scores]
    return [
        EvalExampleCreate(position=i, example_id=str(x), scores=dict(s), details=dict(d))
        for i, (x, s, d) in enumerate(zip(ids, scores, details, strict=True))
    ]


def make_evaluation(
    registry: Registry,
    *,
    checkpoint: CheckpointPublic | None = None,
    evaluator: str = "json_schema",
    metrics: Mapping[str, float] | None = None,
    examples: Sequence[EvalExampleCreate] = (),
    config_hash: str = "0",
    **fields: Any,
) -> EvaluationPublic:
    """Record an evaluation of `checkpoint` (a new one unless given) with its examples.

    `fields` are other EvaluationCreate fields (status, error, n_examples, duration_s).
    """
    checkpoint = checkpoint or make_checkpoint(registry)
    evaluation_in = EvaluationCreate(
        checkpoint_id=checkpoint.id,
        evaluator=evaluator,
        config_hash=config_hash,
        metrics=dict(metrics or {}),
        **fields,
    )
    return registry.record_evaluation(evaluation_in=evaluation_in, examples=list(examples))


def make_alias(
    registry: Registry,
    *,
    checkpoint: CheckpointPublic | None = None,
    name: str = "production",
    actor: str = "test",
    **fields: Any,
) -> AliasPublic:
    """Point alias `name` of the checkpoint's experiment at `checkpoint` (a new one unless
    given); `fields` are set_alias's other arguments (action, gate, version)."""
    checkpoint = checkpoint or make_checkpoint(registry)
    run = registry.get_run(ref=str(checkpoint.run_id))
    return registry.set_alias(
        experiment_id=run.experiment_id,
        name=name,
        checkpoint_id=checkpoint.id,
        actor=actor,
        **fields,
    )


class Factory:
    """The `make_*` functions bound to one registry (what the `factory` fixture returns)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def experiment(self, **kwargs: Any) -> ExperimentPublic:
        """Return an experiment (see make_experiment)."""
        return make_experiment(self.registry, **kwargs)

    def run(self, **kwargs: Any) -> RunPublic:
        """Create a run (see make_run)."""
        return make_run(self.registry, **kwargs)

    def checkpoint(self, **kwargs: Any) -> CheckpointPublic:
        """Record a checkpoint (see make_checkpoint)."""
        return make_checkpoint(self.registry, **kwargs)

    def evaluation(self, **kwargs: Any) -> EvaluationPublic:
        """Record an evaluation (see make_evaluation)."""
        return make_evaluation(self.registry, **kwargs)

    def alias(self, **kwargs: Any) -> AliasPublic:
        """Point an alias at a checkpoint (see make_alias)."""
        return make_alias(self.registry, **kwargs)
