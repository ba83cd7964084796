"""Batched greedy generation shared by the evaluators that make the model write text.

Owns turning a list of prompt strings into the model's continuations, fast: prompts are
sorted by token length so each batch holds neighbours (little padding), padded on the left,
decoded greedily under `torch.inference_mode()`, and returned in the caller's order. It also
owns `eval_mode`, which every evaluator uses to switch a model (possibly mid-training, with
LoRA adapters) to eval mode and back. `generate_for`, the evaluators' entry point, answers
from the generation cache (`evaluators.cache`) when the handle has a `cache_dir`. It does
not build prompts (that is `ModelHandle.render_prompt`) and does not score outputs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """Put `model` in eval mode for the block, then restore every module's previous mode."""
    # Per module, not model.train(was_training): a peft model mid-training may hold
    # submodules in different modes, and dropout left on would make scores noisy.
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def pad_token_id(tokenizer: Any) -> int:
    """Return the id to pad with: the pad token, else the end-of-sequence token, else 0."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if isinstance(candidate, int):
            return candidate
        if isinstance(candidate, list | tuple) and candidate:
            return int(candidate[0])
    return 0


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Return indices grouped into batches of similar length, longest batch first."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def model_device(model: Any) -> Any:
    """Return the device inputs must be placed on."""
    device = getattr(model, "device", None)
    return device if device is not None else next(model.parameters()).device


def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    *,
    max_new_tokens: int,
    batch_size: int = 16,
    stop_at_eos: bool = True,
    add_special_tokens: bool = True,
) -> list[str]:
    """Return the greedy continuation of each prompt (new text only, special tokens skipped).

    Args:
        model: a causal LM (transformers or peft); its modes are restored afterwards.
        tokenizer: its tokenizer; without a pad token the end-of-sequence token pads.
        prompts: prompt strings, exactly as the model should see them.
        max_new_tokens: at most this many tokens are generated per prompt.
        batch_size: prompts per forward pass; prompts of similar length are batched.
        stop_at_eos: stop a prompt at its end-of-sequence token; False generates
            `max_new_tokens` tokens regardless (useful for timing).
        add_special_tokens: let the tokenizer add its special tokens (e.g. BOS); pass
            False when prompts come from a chat template, which writes its own.

    Returns:
        One string per prompt, in the order of `prompts`.
    """
    import torch

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not prompts:
        return []
    encoded = tokenizer(list(prompts), add_special_tokens=add_special_tokens)["input_ids"]
    empty = [i for i, ids in enumerate(encoded) if not ids]
    if empty:
        raise ValueError(f"prompt {empty[0]} is empty: nothing to condition generation on")
    pad_id = pad_token_id(tokenizer)
    eos_ids = _eos_ids(model, tokenizer)
    device = model_device(model)
    gen_kwargs: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "do_sample": False,
        "num_beams": 1,
        # The model's own sampling defaults would only trigger "unused flag" warnings.
        "temperature": None,
        "top_p": None,
        "top_k": None,
        "pad_token_id": pad_id,
        # An explicit None overrides the model's default, so generation runs to the limit.
        "eos_token_id": (eos_ids or None) if stop_at_eos else None,
        "use_cache": True,
    }
    outputs: list[str] = [""] * len(prompts)
    with eval_mode(model), torch.inference_mode():
        for batch in length_batches([len(ids) for ids in encoded], batch_size):
            width = max(len(encoded[i]) for i in batch)
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                ids = encoded[i]
                input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
                attention_mask[row, width - len(ids) :] = 1
            generated = model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention_mask.to(device),
                **gen_kwargs,
            )
            new_tokens = generated[:, width:].tolist()
            for row, i in enumerate(batch):
                tokens = new_tokens[row]
                if stop_at_eos:
                    tokens = _cut_at_eos(tokens, eos_ids)
                outputs[i] = tokenizer.decode(tokens, skip_special_tokens=True)
    return outputs


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    """Return every token id that ends a sequence (model generation config and tokenizer)."""
    ids: list[int] = []
    config = getattr(model, "generation_config", None)
    for value in (getattr(config, "eos_token_id", None), tokenizer.eos_token_id):
        values = value if isinstance(value, list | tuple) else [value]
        ids.extend(int(v) for v in values if isinstance(v, int) and int(v) not in ids)
    return ids


def _cut_at_eos(tokens: list[int], eos_ids: list[int]) -> list[int]:
    # A finished row keeps being filled with padding; the pad token need not be special,
    # so drop everything after the first end-of-sequence token instead of trusting decode().
    eos = set(eos_ids)
    for position, token in enumerate(tokens):
        if token in eos:
            return tokens[:position]
    return tokens


def generate_for(
    handle: Any,
    prompts: list[str],
    *,
    max_new_tokens: int,
    batch_size: int = 16,
) -> list[str]:
    """Return greedy continuations of already-rendered prompts for a `ModelHandle`.

    The one entry point evaluators use to make a model write: it decides whether the
    tokenizer adds its special tokens (not when a chat template already wrote them) and,
    when the handle has a `cache_dir`, answers from the generation cache and generates
    only the prompts it has not seen for these weights and parameters.
    """
    add_special = needs_special_tokens(handle.tokenizer, prompts)
    cache_dir = getattr(handle, "cache_dir", None)
    if cache_dir is None or not prompts:
        return generate(
            handle.model,
            handle.tokenizer,
            prompts,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            add_special_tokens=add_special,
        )
    from evaluators.cache import GenerationCache, generation_key

    params = {
        "max_new_tokens": max_new_tokens,
        "greedy": True,
        "stop_at_eos": True,
        "add_special_tokens": add_special,
    }
    keys = [
        generation_key(
            model_hash=handle.model_hash, prompt=p, params=params, tokenizer=handle.tokenizer
        )
        for p in prompts
    ]
    cache = GenerationCache(Path(cache_dir))
    found = cache.get_many(keys)
    # Duplicate prompts are generated once.
    missing = list(dict.fromkeys(k for k in keys if k not in found))
    if missing:
        prompt_of = dict(zip(keys, prompts, strict=True))
        outputs = generate(
            handle.model,
            handle.tokenizer,
            [prompt_of[k] for k in missing],
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            add_special_tokens=add_special,
        )
        fresh = dict(zip(missing, outputs, strict=True))
        cache.put_many(fresh, model_hash=handle.model_hash)
        found.update(fresh)
    return [found[k] for k in keys]


def needs_special_tokens(tokenizer: Any, prompts: list[str]) -> bool:
    """Return whether the tokenizer should add its special tokens (BOS) to these prompts.

    Training adds the tokenizer's BOS to plain prompts, while chat templates write their
    own; a prompt that already starts with the BOS text must not get a second one.
    """
    bos = getattr(tokenizer, "bos_token", None)
    return not (bos and prompts and all(p.startswith(bos) for p in prompts))
