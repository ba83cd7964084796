"""References to a checkpoint as users write them: `@production`, `ckpt:12`, `run:3`, `3`.

Owns turning one reference into a checkpoint and the run it belongs to, through the
`Registry` interface only. A run stands for its best checkpoint (else its last trained
one). It does not read specs (the caller passes the experiment an `@alias` belongs to) and
does not run evaluators.

Forms:
- `@NAME`: the checkpoint the experiment's alias NAME points at (needs `experiment`);
- `ckpt:12` / `checkpoint:12`: a checkpoint by id;
- `run:3` / `run:NAME`: a run by id, or the newest run with that name;
- anything else: a run id or name, as with `run:`.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.errors import EvalctlError, NotFoundError
from service.models import CheckpointPublic, RunPublic
from service.registry import Registry


@dataclass(frozen=True)
class ResolvedRef:
    """A checkpoint, the run that made it, and how to name it for a user."""

    checkpoint: CheckpointPublic
    run: RunPublic
    label: str


def resolve_ref(registry: Registry, ref: str, *, experiment: str | None = None) -> ResolvedRef:
    """Resolve a reference to a checkpoint and its run (NotFoundError, one line, if none)."""
    text = ref.strip()
    if not text:
        raise EvalctlError("empty reference: give @ALIAS, ckpt:ID, run:RUN or a run id/name")
    if text.startswith("@"):
        return _resolve_alias(registry, text[1:], experiment)
    kind, sep, value = text.partition(":")
    if sep and kind in ("ckpt", "checkpoint"):
        if not value.isdigit():
            raise EvalctlError(f"reference '{ref}': a checkpoint id is a number (ckpt:12)")
        checkpoint = registry.get_checkpoint(checkpoint_id=int(value))
        run = registry.get_run(ref=str(checkpoint.run_id))
        return ResolvedRef(checkpoint, run, f"ckpt:{checkpoint.id}")
    if sep and kind == "run":
        text = value
    elif sep:
        raise NotFoundError(
            f"reference '{ref}' not understood: give @ALIAS, ckpt:ID, run:RUN or a run id/name"
        )
    run = registry.get_run(ref=text)
    return ResolvedRef(run_checkpoint(registry, run), run, f"run:{run.id}")


def run_checkpoint(registry: Registry, run: RunPublic) -> CheckpointPublic:
    """Return the checkpoint a run stands for: its best, else its last trained one."""
    if run.best_checkpoint_id is not None:
        return registry.get_checkpoint(checkpoint_id=run.best_checkpoint_id)
    trained = [c for c in registry.list_checkpoints(run_id=run.id) if c.step > 0]
    if not trained:
        raise NotFoundError(f"run {run.id} has no trained checkpoint")
    return max(trained, key=lambda c: (c.step, c.id))


def _resolve_alias(registry: Registry, name: str, experiment: str | None) -> ResolvedRef:
    if not name:
        raise EvalctlError("reference '@': give an alias name, e.g. @production")
    if experiment is None:
        raise EvalctlError(f"@{name} needs an experiment (give --spec or --experiment)")
    found = registry.get_experiment(name=experiment)
    alias = registry.get_alias(experiment_id=found.id, name=name)
    checkpoint = registry.get_checkpoint(checkpoint_id=alias.checkpoint_id)
    run = registry.get_run(ref=str(checkpoint.run_id))
    return ResolvedRef(checkpoint, run, f"@{name}")
