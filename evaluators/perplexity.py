"""The `perplexity` evaluator: token-weighted perplexity of the model on a JSONL text file.

Owns reading the texts (`text`, or `input_text` + `output_text`, or chat `messages`),
scoring every token once, and the metrics `ppl`, `nll`, `tokens` and `examples`. Texts
longer than the context window are scored with a sliding window (each token predicted once
with up to `max_length` tokens of context, the strided method of the Hugging Face guide
"Perplexity of fixed-length models"). Windows are batched by length to keep padding low.
A text's first token has no context and is not scored, unless `prefix_token` puts the
tokenizer's BOS (else EOS) before it. To score the same tokens with the same context as
lm-eval's rolling log-likelihood (`HFLM.loglikelihood_rolling` with lm-eval `max_length`
L), set `prefix_token: true`, `max_length: L + 1` and `stride: L`; the numbers then agree
for texts of at most L tokens and for texts whose length is a multiple of L (lm-eval
refills its last window with earlier context, this evaluator does not).
It does not load the model or record results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pydantic import Field, model_validator

from evaluators.base import EvalResult, Evaluator, EvaluatorInputError, ExampleScore, ModelHandle
from evaluators.jsonl import RowIds, json_type, read_jsonl
from service.spec import ExistingFile

DEFAULT_MAX_LENGTH = 2048
PREVIEW_CHARS = 300


@dataclass(frozen=True)
class TextRow:
    """One text to score and where it came from."""

    example_id: str
    text: str
    line: int


@dataclass(frozen=True)
class Window:
    """A slice [begin, end) of one text's tokens; its last `targets` tokens are scored."""

    text_index: int
    begin: int
    end: int
    targets: int


class PerplexityEvaluator(Evaluator):
    """Score how well the model predicts held-out text (lower perplexity is better)."""

    name = "perplexity"

    class Config(Evaluator.Config):
        data: ExistingFile = Field(description="JSONL file of texts to score.")
        text_field: str = Field(
            default="text",
            description="Field holding the text; rows without it may instead have "
            "input_text + output_text (concatenated) or chat messages (contents joined).",
        )
        batch_size: int = Field(default=8, ge=1, description="Windows per forward pass.")
        max_length: int | None = Field(
            default=None,
            ge=2,
            description="Tokens per window, the predicted token included (default: the "
            "model's context, at most 2048); lm-eval's max_length L is max_length L + 1 here.",
        )
        stride: int | None = Field(
            default=None,
            ge=1,
            description="Sliding-window step for longer texts (default: max_length // 2); "
            "stride L with max_length L + 1 gives lm-eval's rolling windows.",
        )
        prefix_token: bool = Field(
            default=False,
            description="Put the tokenizer's BOS token (else EOS) before each text, unless "
            "the text's tokens already start with it, so that every text token is scored; "
            "true scores the same tokens as lm-eval's rolling log-likelihood.",
        )
        limit: int | None = Field(default=None, ge=1, description="Score only the first N rows.")

        @model_validator(mode="after")
        def _stride_below_window(self) -> PerplexityEvaluator.Config:
            if self.stride is not None and self.max_length is not None:
                _check_stride(self.stride, self.max_length)
            return self

    config: Config

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self._rows: list[TextRow] | None = None

    def prepare(self) -> None:
        """Read and check the texts.

        Raises:
            EvaluatorInputError: a row is not JSON or has no usable text (names file:line).
        """
        path = self.config.data
        row_id = RowIds(path)
        rows = []
        for lineno, row in read_jsonl(path, limit=self.config.limit):
            text = row_text(row, self.config.text_field)
            if isinstance(text, _Problem):
                raise EvaluatorInputError(f"{path}:{lineno}: {text.message}")
            rows.append(TextRow(example_id=row_id(lineno, row), text=text, line=lineno))
        self._rows = rows

    def evaluate(self, handle: ModelHandle) -> EvalResult:
        """Return corpus perplexity plus each text's nll, token count and perplexity."""
        if self._rows is None:
            self.prepare()
        rows = self._rows or []
        max_length = self.config.max_length or default_max_length(handle.model)
        stride = self.config.stride or max(1, max_length // 2)
        try:
            _check_stride(stride, max_length)
        except ValueError as exc:
            raise EvaluatorInputError(f"perplexity: {exc}") from None
        encoded = handle.tokenizer([row.text for row in rows], verbose=False)["input_ids"]
        if self.config.prefix_token:
            encoded = with_prefix(encoded, prefix_token_id(handle.tokenizer))
        sums = token_nll(
            handle.model,
            encoded,
            max_length=max_length,
            stride=stride,
            batch_size=self.config.batch_size,
        )
        return _result(rows, sums)


def token_nll(
    model: Any,
    token_ids: list[list[int]],
    *,
    max_length: int,
    stride: int,
    batch_size: int = 8,
) -> list[tuple[float, int]]:
    """Return (summed negative log-likelihood, predicted tokens) for each token sequence.

    The first token of a sequence has no context and is not predicted; every other token is
    predicted exactly once, with up to `max_length - 1` tokens of context.
    """
    import torch
    import torch.nn.functional as F

    from evaluators.generation import eval_mode, length_batches, model_device

    _check_stride(stride, max_length)
    windows = [
        w
        for i, ids in enumerate(token_ids)
        for w in sliding_windows(i, len(ids), max_length, stride)
    ]
    totals = [[0.0, 0] for _ in token_ids]
    device = model_device(model)
    with eval_mode(model), torch.inference_mode():
        for batch in length_batches([w.end - w.begin for w in windows], batch_size):
            width = max(windows[k].end - windows[k].begin for k in batch)
            # Right padding with no attention mask is exact for a causal model: a real token
            # never sees the pads after it, and unmasked attention takes the fast causal path.
            input_ids = torch.zeros((len(batch), width), dtype=torch.long)
            for row, k in enumerate(batch):
                w = windows[k]
                input_ids[row, : w.end - w.begin] = torch.tensor(
                    token_ids[w.text_index][w.begin : w.end]
                )
            input_ids = input_ids.to(device)
            logits = model(input_ids=input_ids, use_cache=False).logits
            for row, k in enumerate(batch):
                w = windows[k]
                n = w.end - w.begin
                nll = F.cross_entropy(
                    logits[row, n - w.targets - 1 : n - 1].float(),
                    input_ids[row, n - w.targets : n],
                    reduction="sum",
                )
                totals[w.text_index][0] += float(nll)
                totals[w.text_index][1] += w.targets
            del logits
    return [(float(nll), int(count)) for nll, count in totals]


def sliding_windows(text_index: int, length: int, max_length: int, stride: int) -> list[Window]:
    """Return the windows that predict each of a text's tokens (after the first) once."""
    windows: list[Window] = []
    if length < 2:
        return windows
    begin, scored_until = 0, 0
    while True:
        end = min(begin + max_length, length)
        # Tokens before `scored_until` were predicted by an earlier window; they are context.
        targets = min(end - scored_until, end - begin - 1)
        windows.append(Window(text_index, begin, end, targets))
        if end == length:
            return windows
        scored_until = end
        begin += stride


def prefix_token_id(tokenizer: Any) -> int:
    """Return the token lm-eval puts before a text: the BOS token, else the EOS token.

    Raises:
        EvaluatorInputError: the tokenizer has neither.
    """
    for token_id in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    raise EvaluatorInputError(
        "perplexity: prefix_token is true but the tokenizer has no BOS or EOS token"
    )


def with_prefix(token_ids: list[list[int]], prefix: int) -> list[list[int]]:
    """Return the sequences with `prefix` in front of each that does not start with it."""
    # A tokenizer that adds BOS itself already gave every token its context.
    return [ids if ids[:1] == [prefix] else [prefix, *ids] for ids in token_ids]


def default_max_length(model: Any) -> int:
    """Return the model's context length, capped at 2048 tokens."""
    config = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value >= 2:
            return min(value, DEFAULT_MAX_LENGTH)
    return DEFAULT_MAX_LENGTH


def row_text(row: dict[str, Any], text_field: str) -> str | _Problem:
    """Return the text a row holds, or a problem saying why it has none."""
    if text_field in row:
        value = row[text_field]
        if not isinstance(value, str):
            return _Problem(f"field '{text_field}' must be a string, got {json_type(value)}")
        return value
    if "input_text" in row and "output_text" in row:
        parts = [row["input_text"], row["output_text"]]
        if not all(isinstance(p, str) for p in parts):
            return _Problem("input_text and output_text must be strings")
        return parts[0] + parts[1]
    if "messages" in row:
        messages = row["messages"]
        if not isinstance(messages, list) or not all(
            isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages
        ):
            return _Problem("messages must be a list of objects with a string 'content'")
        return "\n".join(m["content"] for m in messages)
    fields = ", ".join(sorted(row)) or "none"
    return _Problem(
        f"no '{text_field}' field (nor input_text + output_text, nor messages); "
        f"fields here: {fields}. Set text_field to the field that holds the text"
    )


@dataclass(frozen=True)
class _Problem:
    message: str


def _check_stride(stride: int, max_length: int) -> None:
    if stride >= max_length:
        raise ValueError(
            f"stride ({stride}) must be smaller than max_length ({max_length}), "
            "or tokens between windows would not be scored"
        )


def _result(rows: list[TextRow], sums: list[tuple[float, int]]) -> EvalResult:
    examples = []
    for row, (nll, count) in zip(rows, sums, strict=True):
        preview = row.text if len(row.text) <= PREVIEW_CHARS else row.text[:PREVIEW_CHARS] + "…"
        scores: dict[str, float] = {"tokens": float(count)}
        details: dict[str, Any] = {"text": preview, "line": row.line}
        if count:
            scores["nll"] = nll / count
            scores["ppl"] = math.exp(nll / count)
        else:
            details["error"] = "text too short to score (fewer than 2 tokens)"
        examples.append(ExampleScore(example_id=row.example_id, scores=scores, details=details))
    total_nll = sum(nll for nll, _ in sums)
    total_tokens = sum(count for _, count in sums)
    if total_tokens == 0:
        raise EvaluatorInputError("perplexity: no text has 2 or more tokens; nothing to score")
    mean_nll = total_nll / total_tokens
    metrics = {
        "ppl": math.exp(mean_nll),
        "nll": mean_nll,
        "tokens": float(total_tokens),
        "examples": float(len(rows)),
    }
    return EvalResult(metrics=metrics, examples=examples)
