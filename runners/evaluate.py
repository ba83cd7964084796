"""Re-evaluating recorded checkpoints: `evalctl eval` after (or without) training.

Owns choosing the evaluators to run (all of the spec's, or the named ones), checking that
the spec's base model is the run's and that every checkpoint's weights still hash to what
was recorded (before any model work), loading each checkpoint once (base + adapter; step 0
is the base model itself) and scoring it through `runners.scoring.CheckpointScorer`, the
same path `evalctl run` records with, so rows and MLflow metrics look alike. The shared
generation cache makes re-scoring an unchanged checkpoint cheap. It does not train.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from service.errors import EvalctlError
from service.models import CheckpointPublic, EvaluationPublic, RunPublic
from service.registry import Registry
from service.settings import Settings
from service.spec import Spec

from .tracking import MlflowTracker, NullTracker


@dataclass
class _Target:
    checkpoint: CheckpointPublic
    run: RunPublic


class AttachedMlflowTracker(MlflowTracker):
    """Logs to an existing MLflow run without changing its status (it may be finished)."""

    def __init__(self, *, tracking_uri: str, run_id: str) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.run_id = run_id


def select_evaluators(
    spec: Spec, names: Sequence[str] | None, *, spec_dir: Path
) -> list[tuple[str, Any]]:
    """Return built evaluators: the spec's, or only `names` (each must be in the spec).

    Raises:
        UnknownEvaluatorError: a name is not registered (with "did you mean").
        EvalctlError: a registered name is not configured in the spec.
    """
    from evaluators.registry import build_evaluator, get_evaluator_class

    configs = dict(spec.evaluator_configs())
    where = spec.source.name if spec.source else "the spec"
    if not configs:
        raise EvalctlError(f"{where} configures no evaluators (add an `evaluators:` list)")
    wanted = list(dict.fromkeys(names)) if names else list(configs)
    for name in wanted:
        get_evaluator_class(name)  # unknown names fail with a suggestion
        if name not in configs:
            raise EvalctlError(
                f"evaluator '{name}' is not configured in {where} "
                f"(it has: {', '.join(configs)}); add it under `evaluators:`"
            )
    context = {"base_dir": spec_dir, "check_files": True}
    return [(name, build_evaluator(name, configs[name], context)) for name in wanted]


def evaluate_recorded(
    *,
    registry: Registry,
    settings: Settings,
    spec: Spec,
    checkpoint_ids: Sequence[int],
    evaluator_names: Sequence[str] | None,
    console: Console,
) -> list[EvaluationPublic]:
    """Score recorded checkpoints with the spec's evaluators and record the evaluations.

    Every check (evaluator names and inputs, base model, checkpoint hashes) runs before
    the first model is loaded, so a bad request records nothing.
    """
    from evaluators import prepare_all
    from evaluators.loading import verify_weights

    from .sources import pick_device, resolve_base_model

    spec_dir = spec.source.parent if spec.source else Path.cwd()
    evaluators = select_evaluators(spec, evaluator_names, spec_dir=spec_dir)
    prepare_all(evaluators)
    targets = _targets(registry, checkpoint_ids)
    with console.status("resolving the base model"):
        resolved = resolve_base_model(spec.base_model, cache_dir=settings.cache_dir)
    for run in {t.run.id: t.run for t in targets}.values():
        if run.base_model_hash and run.base_model_hash != resolved.sha256:
            raise EvalctlError(
                f"the spec's base model ({resolved.source}) is not the one run {run.id} "
                f"was trained from ({run.base_model or run.base_model_hash[:12]})"
            )
    for t in targets:
        label = f"checkpoint {t.checkpoint.id}"
        if t.checkpoint.step == 0:
            if t.checkpoint.sha256 != resolved.sha256:
                raise EvalctlError(
                    f"{label} (base model) at {resolved.path} changed since it was recorded"
                )
        else:
            verify_weights(Path(t.checkpoint.path), t.checkpoint.sha256, label=label)

    device = pick_device(spec.training.device)
    recorded: list[EvaluationPublic] = []
    for t in targets:
        recorded.extend(
            _score_one(t, evaluators, resolved.path, device, registry, settings, spec, console)
        )
    return recorded


def _targets(registry: Registry, checkpoint_ids: Sequence[int]) -> list[_Target]:
    runs: dict[int, RunPublic] = {}
    targets = []
    for checkpoint_id in dict.fromkeys(checkpoint_ids):
        checkpoint = registry.get_checkpoint(checkpoint_id=checkpoint_id)
        if checkpoint.run_id not in runs:
            runs[checkpoint.run_id] = registry.get_run(ref=str(checkpoint.run_id))
        targets.append(_Target(checkpoint=checkpoint, run=runs[checkpoint.run_id]))
    if not targets:
        raise EvalctlError("no checkpoints to evaluate")
    return targets


def _score_one(
    target: _Target,
    evaluators: list[tuple[str, Any]],
    base_path: Path,
    device: str,
    registry: Registry,
    settings: Settings,
    spec: Spec,
    console: Console,
) -> list[EvaluationPublic]:
    from evaluators.loading import load_checkpoint_model
    from service.prompting import PromptRenderer

    from .run import RunContext
    from .scoring import CheckpointScorer

    checkpoint, run = target.checkpoint, target.run
    label = f"checkpoint {checkpoint.id}"
    with console.status(f"loading {label} (step {checkpoint.step})"):
        model, tokenizer = load_checkpoint_model(
            base_path=base_path,
            checkpoint_path=None if checkpoint.step == 0 else Path(checkpoint.path),
            expected_sha256=None,  # verified up front, before any model was loaded
            dtype=spec.base_model.dtype,
            device=device,
            trust_remote_code=spec.base_model.trust_remote_code,
            label=label,
        )
    ctx = RunContext(spec=spec, registry=registry, settings=settings, console=console)
    scorer = CheckpointScorer(
        ctx, run, evaluators, tokenizer, PromptRenderer(spec.data, tokenizer), _tracker(ctx, run)
    )
    try:
        return scorer(checkpoint, model)
    finally:
        del model
        gc.collect()


def _tracker(ctx: Any, run: RunPublic) -> Any:
    if not (ctx.spec.tracking.mlflow and run.mlflow_run_id):
        return NullTracker()
    return AttachedMlflowTracker(tracking_uri=ctx.settings.tracking_uri, run_id=run.mlflow_run_id)
