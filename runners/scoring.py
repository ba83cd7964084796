"""Checkpoint scoring: run the spec's evaluators on a checkpoint and record the results.

Owns turning evaluator outcomes into Evaluation rows (with their per-example scores) and
MLflow step metrics, and choosing a run's best checkpoint by the spec's metric. Which
checkpoints get scored, and when, is decided by `runners.run` and `runners.train`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from service.models import (
    CheckpointPublic,
    EvalExampleCreate,
    EvaluationCreate,
    EvaluationPublic,
    EvaluationStatus,
)
from service.registry import Registry
from service.spec import Spec

if TYPE_CHECKING:
    from service.models import RunPublic

    from .run import RunContext


class CheckpointScorer:
    """Scores one checkpoint with every evaluator and records the evaluations."""

    def __init__(
        self,
        ctx: RunContext,
        run: RunPublic,
        evaluators: list[tuple[str, Any]],
        tokenizer: Any,
        renderer: Any,
        tracker: Any,
    ) -> None:
        self.ctx, self.run, self.evaluators = ctx, run, evaluators
        self.tokenizer, self.renderer, self.tracker = tokenizer, renderer, tracker

    def __call__(self, checkpoint: CheckpointPublic, model: Any) -> list[EvaluationPublic]:
        """Evaluate `model` (the weights of `checkpoint`) and record the results."""
        from evaluators import evaluate_checkpoint
        from evaluators.base import ModelHandle

        if not self.evaluators:
            return []
        handle = ModelHandle(
            model=model,
            tokenizer=self.tokenizer,
            model_hash=checkpoint.sha256,
            render_prompt=self.renderer.render_text,
            cache_dir=self.ctx.settings.cache_dir / "generations",
        )
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        label = "base model" if checkpoint.step == 0 else f"step {checkpoint.step}"
        bar = Progress(
            TextColumn("[bold]evaluating {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=self.ctx.console,
            transient=True,
        )
        with bar:
            task = bar.add_task(label, total=len(self.evaluators))

            def advance(name: str, index: int, total: int) -> None:
                bar.update(task, completed=index, description=f"{label}: {name}")

            outcomes = evaluate_checkpoint(
                handle=handle, evaluators=self.evaluators, progress=advance
            )
        recorded = []
        for outcome in outcomes:
            recorded.append(self._record(checkpoint, outcome))
            if outcome.error:
                self.ctx.console.print(f"[red]evaluator {outcome.name} failed:[/] {outcome.error}")
        return recorded

    def _record(self, checkpoint: CheckpointPublic, outcome: Any) -> EvaluationPublic:
        result = outcome.result
        metrics = dict(result.metrics) if result else {}
        examples = [
            EvalExampleCreate(
                position=i, example_id=ex.example_id, scores=ex.scores, details=ex.details
            )
            for i, ex in enumerate(result.examples if result else [])
        ]
        evaluation = self.ctx.registry.record_evaluation(
            evaluation_in=EvaluationCreate(
                checkpoint_id=checkpoint.id,
                evaluator=outcome.name,
                config_hash=outcome.config_hash,
                status=EvaluationStatus.failed if outcome.error else EvaluationStatus.succeeded,
                error=outcome.error,
                metrics=metrics,
                n_examples=len(examples),
                duration_s=outcome.duration_s,
            ),
            examples=examples,
        )
        named = {f"{outcome.name}.{k}": v for k, v in metrics.items()}
        self.tracker.log_metrics(named, step=checkpoint.step)
        return evaluation


def metric_value(
    metric: str, checkpoint: CheckpointPublic, evaluations: list[EvaluationPublic]
) -> float | None:
    """Return a checkpoint's value of `metric` ('eval_loss', 'train_loss' or 'evaluator.key')."""
    if metric in ("eval_loss", "train_loss"):
        value = getattr(checkpoint, metric)
        return None if value is None else float(value)
    evaluator, _, key = metric.partition(".")
    for evaluation in evaluations:
        if evaluation.checkpoint_id == checkpoint.id and evaluation.evaluator == evaluator:
            value = evaluation.metrics.get(key)
            return None if value is None else float(value)
    return None


def pick_best(spec: Spec, registry: Registry, run_id: int) -> CheckpointPublic | None:
    """Return the trained checkpoint that is best by the spec's metric (else the last)."""
    trained = [c for c in registry.list_checkpoints(run_id=run_id) if c.step > 0]
    if not trained:
        return None
    chosen = spec.best_checkpoint
    metric, mode = (chosen.metric, chosen.mode) if chosen else ("eval_loss", "min")
    evaluations = registry.list_evaluations(run_id=run_id)
    scored = [(metric_value(metric, c, evaluations), c) for c in trained]
    valued = [(v, c) for v, c in scored if v is not None]
    if not valued:
        return max(trained, key=lambda c: c.step)
    sign = 1 if mode == "max" else -1
    # Ties go to the earlier checkpoint: fewer steps for the same score.
    return max(valued, key=lambda vc: (sign * vc[0], -vc[1].step))[1]
