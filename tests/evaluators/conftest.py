"""Fixtures for evaluator tests: the tiny model loaded fresh per test, and a JSONL writer."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from evaluators.base import ModelHandle


@pytest.fixture
def tiny_tokenizer(tiny_model_dir: Path) -> Any:
    """Return the tiny model's tokenizer."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture
def tiny_model(tiny_model_dir: Path) -> Any:
    """Return the tiny random Llama in float32 (loaded per test: tests may change it)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)


@pytest.fixture
def chat_render(tiny_tokenizer: Any) -> Callable[[str], str]:
    """Return a prompt renderer that wraps text in the tiny tokenizer's chat template."""

    def render(text: str) -> str:
        messages = [{"role": "user", "content": text}]
        return tiny_tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )

    return render


@pytest.fixture
def tiny_handle(tiny_model: Any, tiny_tokenizer: Any, chat_render: Callable) -> ModelHandle:
    """Return a ModelHandle over the tiny model with a chat-template renderer."""
    return ModelHandle(
        model=tiny_model, tokenizer=tiny_tokenizer, model_hash="tiny", render_prompt=chat_render
    )


@pytest.fixture
def write_jsonl(tmp_path: Path) -> Callable[..., Path]:
    """Return a function writing rows as JSONL under tmp_path (a str row is a raw line)."""

    def write(rows: list[Any], name: str = "data.jsonl") -> Path:
        lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
        path = tmp_path / name
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        return path

    return write
