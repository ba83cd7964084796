"""The training loop: transformers Trainer + peft, a checkpoint record and evaluation per save.

Owns turning a model and tokenized data into checkpoints: wrapping the model for LoRA or
full fine-tuning, the Trainer arguments derived from the spec, and the callback that, on
every save, hashes the weights, records the Checkpoint, scores it with the spec's
evaluators and logs step metrics to MLflow. Reading data and resolving models happen
before (`runners.data`, `runners.sources`); run bookkeeping lives in `runners.run`.
Importing this module imports transformers: the CLI imports it only inside `evalctl run`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from transformers import TrainerCallback

from service.models import CheckpointCreate, CheckpointPublic
from service.registry import Registry
from service.spec import Spec, TrainingSpec

from .sources import sha256_weights

# Called with (checkpoint, model) after each checkpoint is recorded; scores it.
ScoreFn = Callable[[CheckpointPublic, Any], None]


@dataclass
class TrainPlan:
    """Step counts derived from the data size and the spec."""

    steps_per_epoch: int
    total_steps: int
    save_every: int
    eval_every: int | None
    logging_every: int


def plan_steps(training: TrainingSpec, n_train: int, has_eval: bool) -> TrainPlan:
    """Return total steps and save/eval/log intervals (4 evenly spaced saves by default)."""
    per_step = training.batch_size * training.gradient_accumulation
    steps_per_epoch = max(1, math.ceil(n_train / per_step))
    total = training.max_steps or max(1, math.ceil(training.num_epochs * steps_per_epoch))
    save_every = training.save_every_steps or max(1, math.ceil(total / 4))
    eval_every = (training.eval_every_steps or save_every) if has_eval else None
    return TrainPlan(steps_per_epoch, total, save_every, eval_every, max(1, total // 200))


def wrap_model(model: Any, training: TrainingSpec) -> Any:
    """Return the model ready to train: a peft LoRA model, or the model itself for full."""
    if training.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if training.method == "full":
        return model
    from peft import LoraConfig, get_peft_model

    if training.method == "qlora":  # validated upstream: bitsandbytes + CUDA exist
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model)
    lora = training.lora
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )
    if training.gradient_checkpointing:
        model.enable_input_require_grads()
    return get_peft_model(model, config)


def training_arguments(spec: Spec, plan: TrainPlan, out_dir: Path, device: str) -> Any:
    """Return TrainingArguments for the spec (saves, evals and logging on our schedule)."""
    from transformers import TrainingArguments

    t = spec.training
    return TrainingArguments(
        output_dir=str(out_dir),
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation,
        learning_rate=t.learning_rate,
        max_steps=plan.total_steps,
        warmup_steps=t.warmup_steps,
        lr_scheduler_type=t.lr_scheduler,
        weight_decay=t.weight_decay,
        seed=t.seed,
        data_seed=t.seed,
        logging_steps=plan.logging_every,
        save_strategy="steps",
        save_steps=plan.save_every,
        eval_strategy="steps" if plan.eval_every else "no",
        eval_steps=plan.eval_every,
        report_to="none",
        disable_tqdm=True,
        use_cpu=device == "cpu",
        bf16=device == "cuda" and spec.base_model.dtype in ("auto", "bfloat16"),
        dataloader_pin_memory=device == "cuda",
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
        gradient_checkpointing=t.gradient_checkpointing,
    )


@dataclass
class _Telemetry:
    last_loss: float | None = None
    last_eval_loss: float | None = None
    eval_step: int = -1
    best_eval: float = math.inf
    bad_evals: int = 0
    last_time: float = field(default_factory=time.perf_counter)
    last_tokens: int = 0


class RegistryCallback(TrainerCallback):
    """Trainer callback: step metrics to MLflow, checkpoints to the registry, early stop."""

    def __init__(
        self,
        *,
        registry: Registry,
        run_id: int,
        tracker: Any,
        score: ScoreFn,
        patience: int | None,
        progress: Progress | None = None,
    ) -> None:
        self.registry = registry
        self.run_id = run_id
        self.tracker = tracker
        self.score = score
        self.patience = patience
        self.progress = progress
        self.task: Any = None
        self.t = _Telemetry()

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
        if self.progress is not None:
            self.task = self.progress.add_task(
                "training", total=state.max_steps, completed=state.global_step
            )
        self.t.last_time = time.perf_counter()
        self.t.last_tokens = int(getattr(state, "num_input_tokens_seen", 0) or 0)
        return control

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, completed=state.global_step)
        if state.global_step >= state.max_steps:
            # Always keep (and score) the final weights, whatever save_every says.
            control.should_save = True
            control.should_evaluate = args.eval_strategy != "no"
        return control

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> Any:
        logs = dict(logs or {})
        if "loss" in logs:
            self.t.last_loss = float(logs["loss"])
            now = time.perf_counter()
            tokens = int(getattr(state, "num_input_tokens_seen", 0) or 0)
            elapsed = now - self.t.last_time
            if elapsed > 0 and tokens > self.t.last_tokens:
                logs["tokens_per_s"] = (tokens - self.t.last_tokens) / elapsed
            self.t.last_time, self.t.last_tokens = now, tokens
        wanted = ("loss", "eval_loss", "learning_rate", "grad_norm", "epoch", "tokens_per_s")
        metrics = {k: v for k, v in logs.items() if k in wanted or k.startswith("train_")}
        self.tracker.log_metrics(metrics, step=state.global_step)
        return control

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kw: Any):
        loss = (metrics or {}).get("eval_loss")
        if loss is None:
            return control
        self.t.last_eval_loss, self.t.eval_step = float(loss), state.global_step
        if loss < self.t.best_eval:
            self.t.best_eval, self.t.bad_evals = float(loss), 0
        else:
            self.t.bad_evals += 1
            if self.patience is not None and self.t.bad_evals >= self.patience:
                control.should_training_stop = True
                control.should_save = True
        return control

    def on_save(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any):
        if not state.is_world_process_zero:
            return control  # under `accelerate launch` only rank 0 records and scores
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        eval_loss = self.t.last_eval_loss if self.t.eval_step == state.global_step else None
        checkpoint = self.registry.record_checkpoint(
            checkpoint_in=CheckpointCreate(
                run_id=self.run_id,
                step=state.global_step,
                path=str(folder),
                sha256=sha256_weights(folder),
                train_loss=self.t.last_loss,
                eval_loss=eval_loss,
            )
        )
        self.score(checkpoint, model)
        # Scoring took wall time that was not training: keep tokens/s honest.
        self.t.last_time = time.perf_counter()
        return control


class StopCallback(TrainerCallback):
    """Trainer callback: end training cleanly after the step during which `event` was set."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
        if self.event.is_set():
            control.should_training_stop = True
            control.should_save = control.should_evaluate = False
        return control


def train(
    *,
    spec: Spec,
    model: Any,
    tokenizer: Any,
    train_rows: list[dict[str, Any]],
    eval_rows: list[dict[str, Any]] | None,
    collator: Any,
    out_dir: Path,
    device: str,
    callback: RegistryCallback,
    resume_from: Path | None = None,
    stop: threading.Event | None = None,
) -> Any:
    """Run the Trainer to the end (or an early stop, or until `stop` is set)."""
    from transformers import Trainer
    from transformers.trainer_callback import PrinterCallback

    plan = plan_steps(spec.training, len(train_rows), eval_rows is not None)
    args = training_arguments(spec, plan, out_dir, device)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=_ListDataset(train_rows),
        eval_dataset=_ListDataset(eval_rows) if eval_rows else None,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=[callback] if stop is None else [callback, StopCallback(stop)],
    )
    # With tqdm off the Trainer prints every log dict; our progress bar and MLflow suffice.
    trainer.remove_callback(PrinterCallback)
    return trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)


class _ListDataset:
    """A map-style dataset over tokenized rows (what the Trainer's DataLoader needs)."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.rows[index]


def training_progress(console: Console) -> Progress:
    """Return the rich progress bar used while training."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
