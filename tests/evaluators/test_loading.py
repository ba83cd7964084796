"""Loading recorded checkpoints: full weights, LoRA adapters, and refusing changed weights."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from evaluators.loading import CheckpointChangedError, load_checkpoint_model
from service.hashing import sha256_weights


def logits(model, tokenizer):
    import torch

    ids = tokenizer("Order 12 from Alice", return_tensors="pt").input_ids
    with torch.inference_mode():
        return model(input_ids=ids).logits


def test_lora_adapter_loads_onto_the_base(tiny_model, tiny_model_dir: Path, tmp_path: Path):
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    trained = get_peft_model(tiny_model, config).eval()
    adapter = tmp_path / "checkpoint-2"
    trained.save_pretrained(adapter)

    model, tokenizer = load_checkpoint_model(
        base_path=tiny_model_dir, checkpoint_path=adapter, expected_sha256=sha256_weights(adapter)
    )
    assert torch.allclose(logits(model, tokenizer), logits(trained, tokenizer), atol=1e-5)
    assert not model.training


def test_full_checkpoint_and_base_load(tiny_model_dir: Path, tmp_path: Path, tiny_model):
    import torch

    full = tmp_path / "checkpoint-4"
    shutil.copytree(tiny_model_dir, full)
    model, tokenizer = load_checkpoint_model(
        base_path=tiny_model_dir, checkpoint_path=full, expected_sha256=sha256_weights(full)
    )
    assert torch.allclose(logits(model, tokenizer), logits(tiny_model, tokenizer))
    base, _ = load_checkpoint_model(
        base_path=tiny_model_dir, checkpoint_path=None, expected_sha256=None
    )
    assert torch.allclose(logits(base, tokenizer), logits(tiny_model, tokenizer))


def test_changed_weights_are_refused(tiny_model_dir: Path, tmp_path: Path):
    full = tmp_path / "checkpoint-4"
    shutil.copytree(tiny_model_dir, full)
    recorded = sha256_weights(full)
    weights = full / "model.safetensors"
    weights.write_bytes(weights.read_bytes() + b" ")
    with pytest.raises(CheckpointChangedError) as err:
        load_checkpoint_model(
            base_path=tiny_model_dir,
            checkpoint_path=full,
            expected_sha256=recorded,
            label="checkpoint 12",
        )
    assert str(err.value) == f"checkpoint 12 at {full} changed since it was recorded"
    shutil.rmtree(full)
    with pytest.raises(CheckpointChangedError, match="is missing"):
        load_checkpoint_model(base_path=tiny_model_dir, checkpoint_path=full, expected_sha256="x")
