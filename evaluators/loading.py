"""Loading a recorded checkpoint for evaluation: base model + LoRA adapter, or full weights.

Owns turning a checkpoint folder back into a model: the hash of its weights is checked
against the recorded sha256 first (safe by default: a folder edited after it was recorded
is refused), then the base model is loaded once and the adapter is applied with peft, or
the full model is loaded from the folder when it holds `model.safetensors`. The tokenizer
always comes from the base model folder. It does not resolve base-model sources (that is
`runners.sources`) and does not run evaluators.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from service.errors import EvalctlError
from service.hashing import sha256_weights

FULL_WEIGHTS = "model.safetensors"
FULL_INDEX = "model.safetensors.index.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


class CheckpointChangedError(EvalctlError):
    """A checkpoint's weights no longer match the hash recorded for it."""


def verify_weights(folder: Path, expected_sha256: str, *, label: str) -> None:
    """Check that `folder`'s safetensors hash to `expected_sha256`.

    Raises:
        CheckpointChangedError: the folder is missing, empty or its weights changed.
    """
    if not folder.is_dir():
        raise CheckpointChangedError(f"{label} at {folder} is missing")
    try:
        actual = sha256_weights(folder)
    except EvalctlError:
        raise CheckpointChangedError(f"{label} at {folder} has no weights any more") from None
    if actual != expected_sha256:
        raise CheckpointChangedError(f"{label} at {folder} changed since it was recorded")


def is_full_checkpoint(folder: Path) -> bool:
    """Return whether `folder` holds full model weights (not a LoRA adapter)."""
    return (folder / FULL_WEIGHTS).exists() or (folder / FULL_INDEX).exists()


def torch_dtype(dtype: str, device: str) -> Any:
    """Return the torch dtype for a spec's `dtype` ('auto': bfloat16 on CUDA, else float32)."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    return getattr(torch, dtype)


def load_checkpoint_model(
    *,
    base_path: Path,
    checkpoint_path: Path | None,
    expected_sha256: str | None,
    dtype: str = "auto",
    device: str = "cpu",
    trust_remote_code: bool = False,
    label: str = "checkpoint",
) -> tuple[Any, Any]:
    """Return (model, tokenizer) for a recorded checkpoint, in eval mode on `device`.

    Args:
        base_path: the base model folder (safetensors); the tokenizer is read from it.
        checkpoint_path: a LoRA adapter folder or a full-model folder; None = the base.
        expected_sha256: the recorded weight hash of `checkpoint_path` (or of `base_path`
            when there is no checkpoint); None skips the check.
        dtype: 'auto', 'float32', 'bfloat16' or 'float16'.
        device: where to put the model.
        trust_remote_code: allow model code from the folder (off unless the spec says so).
        label: how errors name the checkpoint, e.g. 'checkpoint 12'.

    Raises:
        CheckpointChangedError: the weights do not match `expected_sha256`.
        EvalctlError: the model or adapter cannot be loaded (one line).
    """
    weights = checkpoint_path if checkpoint_path is not None else base_path
    if expected_sha256 is not None:
        verify_weights(weights, expected_sha256, label=label)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {
        "dtype": torch_dtype(dtype, device),
        "trust_remote_code": trust_remote_code,
        "use_safetensors": True,
    }
    model: Any
    try:
        tokenizer = AutoTokenizer.from_pretrained(base_path, trust_remote_code=trust_remote_code)
        if checkpoint_path is not None and is_full_checkpoint(checkpoint_path):
            model = AutoModelForCausalLM.from_pretrained(checkpoint_path, **kwargs)
        else:
            model = AutoModelForCausalLM.from_pretrained(base_path, **kwargs)
            if checkpoint_path is not None:
                model = _apply_adapter(model, checkpoint_path)
    except EvalctlError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EvalctlError(f"{label}: cannot load {weights}: {first}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device).eval(), tokenizer


def _apply_adapter(model: Any, folder: Path) -> Any:
    if not (folder / ADAPTER_WEIGHTS).exists():
        raise EvalctlError(f"{folder}: neither {ADAPTER_WEIGHTS} nor {FULL_WEIGHTS} found")
    from peft import PeftModel

    return PeftModel.from_pretrained(model, folder, is_trainable=False)
