"""Log-likelihood of continuations: how much does the model like text B after text A?

Owns scoring (context, continuation) pairs in batches: the summed log-probability of the
continuation's tokens given the context, as in lm-evaluation-harness's `loglikelihood`.
Context and continuation are tokenized together (so a token that BPE merges across the
boundary is not split apart) and only the tokens that hold continuation characters are
scored; trailing spaces of the context move to the continuation ("Answer: " + "yes" is
scored as "Answer:" + " yes", how the text would be tokenized), while a trailing newline
(the end of a chat template's assistant header) stays in the context. Batches are padded on
the left, so every continuation ends the row and only the last logits are computed. It does
not build prompts or decide which continuation wins.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from evaluators.generation import eval_mode, length_batches, model_device, pad_token_id


@dataclass(frozen=True)
class Encoded:
    """One context + continuation as token ids; the last `scored` ids are the continuation."""

    ids: list[int]
    scored: int


def split_whitespace(context: str, continuation: str) -> tuple[str, str]:
    """Move the context's trailing spaces and tabs to the front of the continuation."""
    stripped = context.rstrip(" \t")
    return stripped, context[len(stripped) :] + continuation


def encode_pair(
    tokenizer: Any, context: str, continuation: str, *, add_special_tokens: bool = True
) -> Encoded:
    """Tokenize context + continuation jointly and count the continuation's tokens.

    Raises:
        ValueError: the continuation is empty or yields no token, or nothing precedes it
            (the first token of a sequence cannot be scored).
    """
    context, continuation = split_whitespace(context, continuation)
    if not continuation:
        raise ValueError("cannot score an empty continuation")
    text = context + continuation
    boundary = len(context)
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        # The first token holding a continuation character; special tokens have empty spans.
        first = next(
            (i for i, (start, end) in enumerate(offsets) if end > boundary and end > start),
            len(ids),
        )
        scored = len(ids) - first
    else:
        ids = tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]
        context_ids = tokenizer(context, add_special_tokens=add_special_tokens)["input_ids"]
        scored = max(1, len(ids) - len(context_ids))
    if scored == 0:
        raise ValueError(f"continuation {continuation!r} yields no token")
    if scored >= len(ids):
        raise ValueError("nothing precedes the continuation: the context must not be empty")
    return Encoded(ids=list(ids), scored=scored)


def continuation_logprobs(
    model: Any,
    tokenizer: Any,
    pairs: list[tuple[str, str]],
    *,
    batch_size: int = 16,
    add_special_tokens: bool = True,
) -> list[float]:
    """Return log p(continuation | context), summed over its tokens, for each pair.

    Args:
        model: a causal LM (transformers or peft); its modes are restored afterwards.
        tokenizer: its tokenizer.
        pairs: (context, continuation) strings; the context exactly as the model sees it.
        batch_size: sequences per forward pass; sequences of similar length are batched.
        add_special_tokens: let the tokenizer add its special tokens (e.g. BOS); pass False
            when contexts come from a chat template, which writes its own.

    Returns:
        One summed log-probability (natural log, <= 0) per pair, in the order of `pairs`.
    """
    import torch

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    encoded = [
        encode_pair(tokenizer, ctx, cont, add_special_tokens=add_special_tokens)
        for ctx, cont in pairs
    ]
    pad_id = pad_token_id(tokenizer)
    device = model_device(model)
    keep_arg = _accepts_logits_to_keep(model)
    results = [0.0] * len(encoded)
    with eval_mode(model), torch.inference_mode():
        for batch in length_batches([len(e.ids) for e in encoded], batch_size):
            width = max(len(encoded[i].ids) for i in batch)
            keep = max(encoded[i].scored for i in batch) + 1
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                ids = encoded[i].ids
                input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
                mask[row, width - len(ids) :] = 1
            # Left padding shifts positions; explicit ids keep them as in an unpadded row.
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            kwargs: dict[str, Any] = {"logits_to_keep": keep} if keep_arg else {}
            logits = model(
                input_ids=input_ids.to(device),
                attention_mask=mask.to(device),
                position_ids=positions.to(device),
                use_cache=False,
                **kwargs,
            ).logits[:, -keep:]
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            for row, i in enumerate(batch):
                n = encoded[i].scored
                # Logits at position t predict token t + 1: the last n tokens are predicted
                # by the n positions before the last one.
                targets = input_ids[row, width - n :].to(device)
                picked = logprobs[row, keep - n - 1 : keep - 1].gather(-1, targets[:, None])
                results[i] = float(picked.sum())
            del logits, logprobs
    return results


def _accepts_logits_to_keep(model: Any) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        return "logits_to_keep" in inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return False
