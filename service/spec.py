"""The experiment spec: pydantic models for the YAML a user writes.

Owns the shape and the field-level rules of a spec (types, ranges, exclusive choices,
paths resolved against the spec's folder). Reading YAML and turning validation errors into
`file:line:col` messages is `service.spec_loader`'s job; evaluator configs are validated
by each plugin's own `Config` (looked up by name and group through `service.plugins`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    model_validator,
)

from service.gate.rule_spec import GateSpec


class StrictModel(BaseModel):
    """Base of every spec section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


def _resolve(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir") if info.context else None
    try:
        value = value.expanduser()
    except RuntimeError:  # `~someone/x` for a user that does not exist
        raise ValueError(f"cannot expand '~' in {value}") from None
    if not value.is_absolute() and base is not None:
        value = Path(base) / value
    return value.resolve() if base is not None else value


def _exists(value: Path) -> bool:
    # Only ValueError becomes a validation error; OSError (name too long, ...) would escape.
    try:
        return value.exists()
    except OSError as exc:
        raise ValueError(f"cannot check path: {exc.strerror or exc}") from None


def _existing_file(value: Path, info: ValidationInfo) -> Path:
    value = _resolve(value, info)
    if (info.context or {}).get("check_files", True):
        if not _exists(value):
            raise ValueError(f"file not found: {value}")
        if not value.is_file():
            raise ValueError(f"not a file: {value}")
    return value


def _existing_path(value: Path, info: ValidationInfo) -> Path:
    value = _resolve(value, info)
    if (info.context or {}).get("check_files", True) and not _exists(value):
        raise ValueError(f"path not found: {value}")
    return value


# A path relative to the spec's folder that must name an existing file / file or folder.
ExistingFile = Annotated[Path, AfterValidator(_existing_file)]
ExistingPath = Annotated[Path, AfterValidator(_existing_path)]
Slug = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]


class BaseModelSpec(StrictModel):
    """Where the base model comes from: exactly one of `path`, `package` or `hub`."""

    path: ExistingPath | None = Field(
        default=None, description="A local Hugging Face model folder or a .gguf file."
    )
    package: str | None = Field(
        default=None, description="An installed Python package that ships the model file."
    )
    file: str | None = Field(
        default=None, description="With `package`: the file (or folder) inside the package."
    )
    hub: str | None = Field(
        default=None, description="A Hugging Face hub id; needs `allow_network: true`."
    )
    revision: str | None = Field(default=None, description="Hub revision (with `hub`).")
    allow_network: bool = Field(default=False, description="Allow downloads from the hub.")
    trust_remote_code: bool = Field(
        default=False, description="Run model code shipped with the weights (off by default)."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", description="Weights dtype: auto = float32 on CPU, bfloat16 on CUDA."
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        # `base_model: ./my-model` is the common case; accept it as `path`.
        return {"path": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _exactly_one_source(self) -> BaseModelSpec:
        given = [k for k in ("path", "package", "hub") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of path, package or hub"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.package is not None and not self.file:
            raise ValueError("package needs file: the model file inside the package")
        if self.file is not None and self.package is None:
            raise ValueError("file is only valid together with package")
        if self.hub is not None and not self.allow_network:
            raise ValueError(
                f"hub model '{self.hub}' needs allow_network: true (evalctl is offline by "
                "default); or point path at a local copy"
            )
        return self


class DataSpec(StrictModel):
    """Training and evaluation data (JSONL) and how rows become prompt + completion."""

    train: ExistingFile = Field(description="Training JSONL file.")
    eval: ExistingFile | None = Field(default=None, description="Held-out JSONL for eval_loss.")
    format: Literal["vertex", "chat", "alpaca", "completion"] = Field(
        description='Row format: vertex {"input_text","output_text"}, chat {"messages"}, '
        'alpaca {"instruction","input","output"}, completion {"text"}.'
    )
    prompt_template: str | None = Field(
        default=None,
        description="Python format string over the row's fields, e.g. 'Extract: {input_text}'.",
    )
    system_prompt: str | None = Field(
        default=None, description="System message put before the prompt in the chat template."
    )
    use_chat_template: bool = Field(
        default=True, description="Wrap prompts in the tokenizer's chat template if it has one."
    )
    on_bad_rows: Literal["fail", "skip"] = Field(
        default="fail", description="Malformed rows fail the run (default) or are skipped."
    )
    on_long_rows: Literal["truncate", "drop"] = Field(
        default="truncate", description="Rows over training.max_seq_len are cut or dropped."
    )


class LoraSpec(StrictModel):
    """LoRA adapter settings (peft)."""

    r: int = Field(default=8, ge=1, le=1024, description="Adapter rank.")
    alpha: float = Field(default=16, gt=0, description="Scaling numerator (alpha / r).")
    dropout: float = Field(default=0.05, ge=0, lt=1, description="Dropout on the adapter input.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        default="all-linear", description="Module names to adapt, or 'all-linear'."
    )


class DistributedSpec(StrictModel):
    """How a job on more than one GPU is spread over them (see `runners.launch`)."""

    strategy: Literal["ddp", "fsdp", "deepspeed"] = Field(
        default="ddp", description="ddp (replicas), fsdp (sharded) or deepspeed (ZeRO)."
    )
    zero_stage: Literal[1, 2, 3] = Field(default=2, description="DeepSpeed ZeRO stage.")
    cpu_offload: bool = Field(
        default=False, description="Offload optimizer state (fsdp: parameters) to CPU memory."
    )


class TrainingSpec(StrictModel):
    """How to fine-tune: method, schedule and when to save and evaluate."""

    method: Literal["lora", "qlora", "full"] = Field(default="lora", description="Method.")
    lora: LoraSpec = Field(default_factory=LoraSpec, description="LoRA/QLoRA settings.")
    epochs: float | None = Field(default=None, gt=0, description="Passes over the data.")
    max_steps: int | None = Field(default=None, ge=1, description="Optimizer steps (wins).")
    learning_rate: float = Field(default=2e-4, gt=0, lt=1, description="Peak learning rate.")
    batch_size: int = Field(default=8, ge=1, description="Examples per device per step.")
    gradient_accumulation: int = Field(default=1, ge=1, description="Micro-batches per step.")
    max_seq_len: int = Field(default=512, ge=8, description="Tokens per example, at most.")
    warmup_steps: int = Field(default=0, ge=0, description="Linear warm-up steps.")
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    weight_decay: float = Field(default=0.0, ge=0, description="AdamW weight decay.")
    seed: int = Field(default=42, description="Seed for data order and initialisation.")
    save_every_steps: int | None = Field(
        default=None, ge=1, description="Save (and evaluate) every N steps; always at the end."
    )
    eval_every_steps: int | None = Field(
        default=None, ge=1, description="eval_loss every N steps (default: when saving)."
    )
    early_stopping_patience: int | None = Field(
        default=None, ge=1, description="Stop after N evaluations without eval_loss improving."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="Where to train.")
    gradient_checkpointing: bool = Field(default=False, description="Trade compute for memory.")
    distributed: DistributedSpec = Field(
        default_factory=DistributedSpec,
        description="Multi-GPU strategy, used when a job asks for more than one GPU.",
    )

    @model_validator(mode="after")
    def _check(self) -> TrainingSpec:
        if self.method == "qlora":
            missing = _qlora_missing()
            if missing:
                raise ValueError(f"method qlora needs {missing}; use method: lora instead")
        return self

    @property
    def num_epochs(self) -> float:
        """Return the epochs to run when max_steps is not set (default 1)."""
        return self.epochs if self.epochs is not None else 1.0


def _qlora_missing() -> str | None:
    if importlib.util.find_spec("bitsandbytes") is None:
        return "the bitsandbytes package (not installed)"
    import torch  # only here: qlora specs are rare and validation must stay fast

    if not torch.cuda.is_available():
        return "a CUDA GPU (none is available)"
    return None


class TrackingSpec(StrictModel):
    """Where and how the run is recorded."""

    experiment: Slug | None = Field(default=None, description="Experiment; default: spec name.")
    mlflow: bool = Field(default=True, description="Log params and step metrics to MLflow.")
    tags: dict[str, str] = Field(default_factory=dict, description="Tags on the run.")


class BestCheckpointSpec(StrictModel):
    """Which metric picks the best checkpoint of a run."""

    metric: str = Field(
        description="'evaluator.metric' (e.g. json_schema.valid_rate) or eval_loss."
    )
    mode: Literal["min", "max"] = Field(description="Whether lower or higher is better.")


class Spec(StrictModel):
    """A fine-tuning experiment: model, data, training, evaluators, tracking."""

    name: Slug = Field(description="Name of the experiment spec (letters, digits, . _ -).")
    description: str | None = Field(default=None, description="Free text.")
    base_model: BaseModelSpec = Field(description="Where the base model comes from.")
    data: DataSpec = Field(description="Training/eval data.")
    training: TrainingSpec = Field(default_factory=TrainingSpec, description="How to train.")
    evaluators: list[dict[str, dict[str, Any] | None]] = Field(
        default_factory=list,
        description="Evaluators that score every checkpoint: a list of {name: config}.",
    )
    tracking: TrackingSpec = Field(default_factory=TrackingSpec, description="Recording.")
    best_checkpoint: BestCheckpointSpec | None = Field(
        default=None, description="Metric that picks the best checkpoint (default: eval_loss)."
    )
    gate: GateSpec | None = Field(
        default=None, description="Baseline and rules for `evalctl gate` (service.gate)."
    )

    _source: Path | None = PrivateAttr(default=None)
    _text: str = PrivateAttr(default="")

    @model_validator(mode="after")
    def _cross_checks(self) -> Spec:
        if self.training.early_stopping_patience is not None and self.data.eval is None:
            raise ValueError("training.early_stopping_patience needs data.eval (eval_loss)")
        return self

    @property
    def source(self) -> Path | None:
        """Return the YAML file this spec was read from, if any."""
        return self._source

    @property
    def text(self) -> str:
        """Return the spec's YAML text as the user wrote it."""
        return self._text

    @property
    def experiment_name(self) -> str:
        """Return the experiment this spec's runs belong to."""
        return self.tracking.experiment or self.name

    def evaluator_configs(self) -> list[tuple[str, dict[str, Any]]]:
        """Return (name, raw config) pairs in spec order."""
        return [(name, cfg or {}) for item in self.evaluators for name, cfg in item.items()]
