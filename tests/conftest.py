"""Shared fixtures: an isolated EVALCTL_HOME, a tiny random Llama model + tokenizer, and
`factory`, the data factories of `tests/factories.py` bound to the test's `registry` fixture.

The tiny model is real transformers code with random weights (fast on CPU); the real
SmolLM2 model is used only by tests marked `slow`.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from service.registry import Registry
from tests.factories import Factory

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CORPUS = [
    "Order 1234 from Alice Smith, alice@example.com, 3 widgets at 4.50 each.",
    'Extract the contact as JSON: {"name": "Bob", "email": "bob@example.org"}',
    'The quick brown fox jumps over the lazy dog. 0123456789 {}[]":,.-_@',
    "Contact Carol Jones by phone +1 555 0100 or email carol.jones@mail.net.",
] * 20


def build_tiny_model(path: Path, *, vocab_size: int = 384, seed: int = 0) -> Path:
    """Write a tiny random Llama model and a BPE tokenizer with a chat template to `path`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<pad>",
        unk_token="<|endoftext|>",
    )
    hf_tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(hf_tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=hf_tok.bos_token_id,
        eos_token_id=hf_tok.eos_token_id,
        pad_token_id=hf_tok.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    hf_tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a folder holding a tiny random Llama model and its tokenizer."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def evalctl_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point EVALCTL_HOME at a fresh folder (embedded SQLite registry and MLflow store)."""
    home = tmp_path / "home"
    monkeypatch.setenv("EVALCTL_HOME", str(home))
    monkeypatch.delenv("EVALCTL_DATABASE_URL", raising=False)
    monkeypatch.delenv("EVALCTL_MLFLOW_URI", raising=False)
    return home


@pytest.fixture
def factory(registry: Registry) -> Factory:
    """Return the data factories bound to `registry` (the fixture of the test's package)."""
    return Factory(registry)


@pytest.fixture
def unique_name() -> str:
    """Return a name no other test uses (tests share databases, never wipe them)."""
    return f"t-{uuid.uuid4().hex[:10]}"


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
