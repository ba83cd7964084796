"""Run orchestration: one spec -> one recorded run, embedded or driven by a runner.

Owns the order of a run (check evaluator inputs, resolve the model, read and check the
data, score the base model as step 0, train, pick the best checkpoint) and its bookkeeping:
status, timings, lineage (spec, git sha, dataset and model hashes) and the failure reason
when something goes wrong. Checkpoints already recorded stay valid when a run fails.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from service.compare import flatten
from service.errors import EvalctlError
from service.models import (
    CheckpointCreate,
    CheckpointPublic,
    RunCreate,
    RunPublic,
    RunStatus,
    RunUpdate,
    utcnow,
)
from service.registry import Registry
from service.settings import Settings
from service.spec import Spec

log = logging.getLogger("evalctl.run")


@dataclass
class RunContext:
    """What every step of a run needs."""

    spec: Spec
    registry: Registry
    settings: Settings
    console: Console
    #: Set by a runner agent when its job is cancelled: training stops at the next step.
    stop: threading.Event | None = None

    @property
    def spec_dir(self) -> Path:
        """Return the folder relative spec paths resolve against."""
        return self.spec.source.parent if self.spec.source else Path.cwd()


class RunCancelled(EvalctlError):
    """The run was asked to stop (its job was cancelled) and stopped cleanly."""


def run_dir(settings: Settings, run_id: int) -> Path:
    """Return the folder holding a run's checkpoints and log."""
    path = settings.home_dir / "runs" / str(run_id)
    path.mkdir(parents=True, exist_ok=True)
    return path


def create_run(ctx: RunContext, *, tags: dict[str, str] | None = None) -> RunPublic:
    """Record a new run for the spec (status queued), with extra `tags`, and return it."""
    spec = ctx.spec
    experiment = ctx.registry.get_or_create_experiment(name=spec.experiment_name)
    return ctx.registry.create_run(
        run_in=RunCreate(
            name=spec.name,
            experiment_id=experiment.id,
            spec_text=spec.text,
            spec_hash=hashlib.sha256(spec.text.encode()).hexdigest(),
            spec_path=str(spec.source) if spec.source else None,
            git_sha=git_sha(ctx.spec_dir),
            tags={**spec.tracking.tags, **(tags or {})},
        )
    )


def git_sha(folder: Path) -> str | None:
    """Return the HEAD commit of the git repository holding `folder`, if any."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def execute_run(ctx: RunContext, run: RunPublic, *, resume: bool = False) -> RunPublic:
    """Carry a run to the end, recording success or the failure reason."""
    from .launch import is_main_process

    folder = run_dir(ctx.settings, run.id)
    if not is_main_process():
        # Rank > 0 of `accelerate launch` (runners.launch): train only; rank 0 records
        # status, checkpoints, evaluations and MLflow, so nothing is written twice.
        _execute(ctx, run, folder, resume, main=False)
        return run
    handler = _attach_log(folder / "run.log")
    ctx.registry.update_run(
        run_id=run.id,
        run_update=RunUpdate(status=RunStatus.running, started_at=utcnow(), failure_reason=None),
    )
    tracker: Any = None
    try:
        tracker = _execute(ctx, run, folder, resume)
    except BaseException as exc:
        reason = failure_reason(exc)
        log.exception("run %s failed: %s", run.id, reason)
        cancelled = isinstance(exc, KeyboardInterrupt | RunCancelled)
        status = RunStatus.cancelled if cancelled else RunStatus.failed
        ctx.registry.update_run(
            run_id=run.id,
            run_update=RunUpdate(status=status, failure_reason=reason, finished_at=utcnow()),
        )
        _end_tracker(ctx, run, "KILLED" if status is RunStatus.cancelled else "FAILED")
        raise
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    if tracker is not None:
        tracker.end("FINISHED")
    return ctx.registry.update_run(
        run_id=run.id,
        run_update=RunUpdate(status=RunStatus.succeeded, finished_at=utcnow()),
    )


def failure_reason(exc: BaseException) -> str:
    """Return the one-line reason recorded on a failed run."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, EvalctlError):
        return str(exc)
    text = str(exc)
    if (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or "No space left" in text:
        where = getattr(exc, "filename", None) or "the run folder"
        return f"disk full while writing {where}: no space left on device"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _attach_log(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler


def _end_tracker(ctx: RunContext, run: RunPublic, status: str) -> None:
    fresh = ctx.registry.get_run(ref=str(run.id))
    if fresh.mlflow_run_id and ctx.spec.tracking.mlflow:
        try:
            from mlflow.tracking import MlflowClient

            MlflowClient(ctx.settings.tracking_uri).set_terminated(fresh.mlflow_run_id, status)
        except Exception:  # the run already failed; MLflow's state is best effort here
            log.warning("could not mark MLflow run %s as %s", fresh.mlflow_run_id, status)


def _execute(
    ctx: RunContext, run: RunPublic, folder: Path, resume: bool, *, main: bool = True
) -> Any:
    from evaluators import prepare_all
    from evaluators.registry import build_evaluator

    from .data import CausalLMCollator
    from .launch import bind_local_gpu
    from .scoring import CheckpointScorer, pick_best
    from .sources import load_model, pick_device, resolve_base_model
    from .train import RegistryCallback, train, training_progress, wrap_model

    spec, console = ctx.spec, ctx.console
    context = {"base_dir": ctx.spec_dir, "check_files": True}
    evaluators = [(n, build_evaluator(n, c, context)) for n, c in spec.evaluator_configs()]
    if main:  # only rank 0 scores checkpoints
        prepare_all(evaluators)
    device = pick_device(spec.training.device)
    bind_local_gpu(device)
    with console.status("resolving the base model (a GGUF file is converted once)"):
        resolved = resolve_base_model(spec.base_model, cache_dir=ctx.settings.cache_dir)
        model, tokenizer = load_model(
            resolved,
            dtype=spec.base_model.dtype,
            device=device,
            trust=spec.base_model.trust_remote_code,
        )
    train_rows, eval_rows, hashes, renderer = _prepare_data(ctx, tokenizer)
    if main:
        ctx.registry.update_run(
            run_id=run.id,
            run_update=RunUpdate(
                base_model=resolved.source, base_model_hash=resolved.sha256, dataset_hashes=hashes
            ),
        )
    tracker = _start_tracker(ctx, run, device, resolved, len(train_rows), main=main)
    scorer = CheckpointScorer(ctx, run, evaluators, tokenizer, renderer, tracker)
    existing = ctx.registry.list_checkpoints(run_id=run.id)
    if main and not any(c.step == 0 for c in existing):
        base = ctx.registry.record_checkpoint(
            checkpoint_in=CheckpointCreate(
                run_id=run.id, step=0, path=str(resolved.path), sha256=resolved.sha256
            )
        )
        scorer(base, model)
    resume_from = _resume_point(existing) if resume else None
    model = wrap_model(model, spec.training)
    with training_progress(console) as progress:
        callback = RegistryCallback(
            registry=ctx.registry,
            run_id=run.id,
            tracker=tracker,
            score=scorer,
            patience=spec.training.early_stopping_patience,
            progress=progress,
        )
        train(
            spec=spec,
            model=model,
            tokenizer=tokenizer,
            train_rows=train_rows,
            eval_rows=eval_rows,
            collator=CausalLMCollator(tokenizer),
            out_dir=folder / "checkpoints",
            device=device,
            callback=callback,
            resume_from=resume_from,
            stop=ctx.stop,
        )
    if ctx.stop is not None and ctx.stop.is_set():
        raise RunCancelled("cancelled")
    if not main:
        return None
    best = pick_best(spec, ctx.registry, run.id)
    if best is not None:
        ctx.registry.update_run(run_id=run.id, run_update=RunUpdate(best_checkpoint_id=best.id))
        tracker.set_tags({"evalctl.best_checkpoint_step": str(best.step)})
    return tracker


def _prepare_data(ctx: RunContext, tokenizer: Any) -> tuple[Any, Any, dict[str, str], Any]:
    from service.prompting import PromptRenderer

    from .data import build_examples, check_data, read_jsonl, render_report

    data, training = ctx.spec.data, ctx.spec.training
    renderer = PromptRenderer(data, tokenizer)
    sets = []
    for path in (data.train, data.eval):
        if path is None:
            sets.append(None)
            continue
        rows = read_jsonl(path, data.format, on_bad_rows=data.on_bad_rows, progress=True)
        sets.append(
            build_examples(
                rows,
                renderer,
                tokenizer,
                max_seq_len=training.max_seq_len,
                on_long_rows=data.on_long_rows,
                progress=True,
            )
        )
    report = check_data(sets[0], sets[1])
    ctx.console.print(render_report(report))
    for warning in report.warnings:
        ctx.console.print(f"[yellow]warning:[/] {warning}")
        log.warning(warning)
    eval_rows = sets[1].rows if sets[1] is not None else None
    return sets[0].rows, eval_rows, report.hashes, renderer


def _start_tracker(
    ctx: RunContext, run: RunPublic, device: str, resolved: Any, n_train: int, *, main: bool
) -> Any:
    from .tracking import MlflowTracker, NullTracker, system_info

    spec = ctx.spec
    if not spec.tracking.mlflow or not main:  # ranks > 0 log nothing to MLflow
        return NullTracker()
    tracker = MlflowTracker(
        tracking_uri=ctx.settings.tracking_uri,
        experiment=spec.experiment_name,
        run_name=f"{spec.name}-{run.id}",
        tags={"evalctl.run_id": str(run.id), **spec.tracking.tags},
        run_id=run.mlflow_run_id,
    )
    if run.mlflow_run_id is None:
        ctx.registry.update_run(run_id=run.id, run_update=RunUpdate(mlflow_run_id=tracker.run_id))
        params = flatten(spec.training.model_dump(mode="json"), "training", lists=False)
        params.update(
            {
                "base_model": resolved.source,
                "base_model.sha256": resolved.sha256,
                "data.format": spec.data.format,
                "data.train_rows": n_train,
                "evaluators": ",".join(n for n, _ in spec.evaluator_configs()),
            }
        )
        tracker.log_params(params)
        tracker.set_tags(system_info(device))
    return tracker


def _resume_point(existing: list[CheckpointPublic]) -> Path | None:
    from .sources import sha256_weights

    trained = [c for c in existing if c.step > 0]
    if not trained:
        return None
    last = max(trained, key=lambda c: c.step)
    path = Path(last.path)
    if not path.is_dir():
        raise EvalctlError(f"cannot resume: checkpoint folder {path} is missing")
    if sha256_weights(path) != last.sha256:
        raise EvalctlError(f"cannot resume: {path} changed since step {last.step} was recorded")
    return path
