"""Perplexity: batched, bucketed, sliding-window scoring equals a plain per-text loop."""

from __future__ import annotations

import math
import random
import re

import pytest
import torch

from evaluators.base import EvaluatorInputError
from evaluators.perplexity import PerplexityEvaluator, sliding_windows

WORDS = [
    *("order", "alice", "smith", "widgets", "contact", "carol", "jones", "phone", "email"),
    *("the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "0123", "4.50"),
    *("each", "{}", "[]", "@example.com"),
]


def make_texts(n: int, max_words: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, max_words))) for _ in range(n)]


def reference_nll(model, tokenizer, text: str, max_length: int, stride: int) -> tuple[float, int]:
    """Score one text alone, unpadded, the way the Hugging Face guide does (summed NLL)."""
    ids = tokenizer(text, return_tensors="pt").input_ids
    length = ids.shape[1]
    total, count, prev_end = 0.0, 0, 0
    with torch.no_grad():
        for begin in range(0, length, stride):
            end = min(begin + max_length, length)
            window = ids[:, begin:end]
            labels = window.clone()
            labels[:, : -(end - prev_end)] = -100
            predicted = int((labels[:, 1:] != -100).sum())
            if predicted:
                loss = model(input_ids=window, labels=labels).loss
                total += float(loss) * predicted
                count += predicted
            prev_end = end
            if end == length:
                break
    return total, count


def evaluate(tiny_handle, path, **config):
    evaluator = PerplexityEvaluator(PerplexityEvaluator.Config(data=path, **config))
    evaluator.prepare()
    return evaluator.evaluate(tiny_handle)


def assert_close(a: float, b: float, rel: float = 1e-4) -> None:
    assert abs(a - b) <= rel * abs(b), f"{a} vs {b}"


def test_short_texts_of_uneven_length_match_a_per_text_loop(tiny_handle, write_jsonl):
    texts = make_texts(13, max_words=40)
    path = write_jsonl([{"text": t} for t in texts])
    result = evaluate(tiny_handle, path, batch_size=8, max_length=256)

    ref = [
        reference_nll(tiny_handle.model, tiny_handle.tokenizer, t, max_length=256, stride=128)
        for t in texts
    ]
    nll, count = sum(r[0] for r in ref), sum(r[1] for r in ref)
    assert result.metrics["tokens"] == count
    assert result.metrics["examples"] == len(texts)
    assert_close(result.metrics["nll"], nll / count)
    assert_close(result.metrics["ppl"], math.exp(nll / count))
    assert [e.example_id for e in result.examples] == [str(i) for i in range(1, 14)]
    for example, (text_nll, text_count) in zip(result.examples, ref, strict=True):
        assert example.scores["tokens"] == text_count
        assert_close(example.scores["nll"], text_nll / text_count)
        assert_close(example.scores["ppl"], math.exp(text_nll / text_count))


@pytest.mark.parametrize(("max_length", "stride"), [(32, 16), (24, 7), (16, 15)])
def test_texts_longer_than_the_window_match_an_unbatched_sliding_loop(
    tiny_handle, write_jsonl, max_length, stride
):
    texts = [*make_texts(9, max_words=60, seed=1), "fox " * 70]
    path = write_jsonl([{"text": t} for t in texts])
    result = evaluate(tiny_handle, path, batch_size=4, max_length=max_length, stride=stride)

    ref = [
        reference_nll(tiny_handle.model, tiny_handle.tokenizer, t, max_length, stride)
        for t in texts
    ]
    lengths = [len(tiny_handle.tokenizer(t).input_ids) for t in texts]
    assert max(lengths) > 3 * max_length  # several windows per long text
    # every token but the first is predicted exactly once
    assert result.metrics["tokens"] == sum(n - 1 for n in lengths)
    assert result.metrics["tokens"] == sum(r[1] for r in ref)
    assert_close(result.metrics["nll"], sum(r[0] for r in ref) / result.metrics["tokens"])
    for example, (text_nll, text_count) in zip(result.examples, ref, strict=True):
        assert_close(example.scores["nll"], text_nll / text_count)


def test_batch_size_does_not_change_the_result(tiny_handle, write_jsonl):
    path = write_jsonl([{"text": t} for t in make_texts(12, max_words=50, seed=2)])
    one = evaluate(tiny_handle, path, batch_size=1, max_length=32)
    eight = evaluate(tiny_handle, path, batch_size=8, max_length=32)
    assert_close(eight.metrics["ppl"], one.metrics["ppl"], rel=1e-5)
    assert eight.metrics["tokens"] == one.metrics["tokens"]


def test_default_window_is_the_model_context(tiny_handle, write_jsonl):
    # The tiny model has 256 positions; a 400-token text must be scored in windows.
    text = "widgets " * 400
    path = write_jsonl([{"text": text}])
    result = evaluate(tiny_handle, path)
    nll, count = reference_nll(tiny_handle.model, tiny_handle.tokenizer, text, 256, 128)
    assert result.metrics["tokens"] == count
    assert_close(result.metrics["nll"], nll / count)


def test_rows_without_text_field_use_vertex_or_chat_fields(tiny_handle, write_jsonl, tmp_path):
    plain = write_jsonl(
        [{"text": "Order 12: widgets"}, {"text": "hello\nthere"}], name="plain.jsonl"
    )
    mixed = write_jsonl(
        [
            {"input_text": "Order 12: ", "output_text": "widgets"},
            {"messages": [{"role": "user", "content": "hello"}, {"role": "x", "content": "there"}]},
        ],
        name="mixed.jsonl",
    )
    assert evaluate(tiny_handle, mixed).metrics == evaluate(tiny_handle, plain).metrics


def test_custom_text_field_and_limit(tiny_handle, write_jsonl):
    path = write_jsonl([{"body": t, "id": f"doc-{i}"} for i, t in enumerate(make_texts(5, 20))])
    result = evaluate(tiny_handle, path, text_field="body", limit=3)
    assert [e.example_id for e in result.examples] == ["doc-0", "doc-1", "doc-2"]
    assert result.metrics["examples"] == 3


def test_model_mode_is_restored_and_dropout_is_off(tiny_handle, write_jsonl):
    path = write_jsonl([{"text": t} for t in make_texts(4, 20)])
    tiny_handle.model.config.attention_dropout = 0.5
    for layer in tiny_handle.model.model.layers:
        layer.self_attn.attention_dropout = 0.5
    tiny_handle.model.train()
    first = evaluate(tiny_handle, path, batch_size=2)
    second = evaluate(tiny_handle, path, batch_size=2)
    assert tiny_handle.model.training
    assert first.metrics == second.metrics  # dropout would make them differ


def test_malformed_row_is_reported_with_file_and_line(write_jsonl):
    path = write_jsonl([{"text": "fine"}, "", '{"text": "oops"', {"text": "fine"}])
    evaluator = PerplexityEvaluator(PerplexityEvaluator.Config(data=path))
    with pytest.raises(EvaluatorInputError, match=rf"^{re.escape(str(path))}:3: invalid JSON"):
        evaluator.prepare()


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"body": "x", "label": 1}, "no 'text' field .*fields here: body, label"),
        ({"text": 5}, "field 'text' must be a string, got number"),
        (["a list"], "expected a JSON object, got array"),
        ({"messages": "hi"}, "messages must be a list"),
    ],
)
def test_row_without_usable_text_says_why(write_jsonl, row, message):
    path = write_jsonl([{"text": "fine"}, row])
    evaluator = PerplexityEvaluator(PerplexityEvaluator.Config(data=path))
    with pytest.raises(EvaluatorInputError, match=rf"{re.escape(str(path))}:2: {message}"):
        evaluator.prepare()


def test_duplicate_ids_are_rejected(write_jsonl):
    path = write_jsonl([{"text": "a", "id": "x"}, {"text": "b", "id": "x"}])
    with pytest.raises(EvaluatorInputError, match="2: duplicate id 'x' \\(first at line 1\\)"):
        PerplexityEvaluator(PerplexityEvaluator.Config(data=path)).prepare()


def test_config_rejects_a_stride_that_skips_tokens(write_jsonl):
    path = write_jsonl([{"text": "a"}])
    with pytest.raises(ValueError, match="stride \\(64\\) must be smaller than max_length"):
        PerplexityEvaluator.Config(data=path, max_length=64, stride=64)


def test_relative_data_path_resolves_against_the_spec_folder(write_jsonl, tmp_path):
    write_jsonl([{"text": "a"}], name="eval.jsonl")
    config = PerplexityEvaluator.Config.model_validate(
        {"data": "eval.jsonl"}, context={"base_dir": tmp_path}
    )
    assert config.data == (tmp_path / "eval.jsonl").resolve()
    with pytest.raises(ValueError, match="file not found"):
        PerplexityEvaluator.Config.model_validate(
            {"data": "missing.jsonl"}, context={"base_dir": tmp_path}
        )


def test_sliding_windows_predict_each_token_once():
    for length in range(0, 60):
        for max_length, stride in [(8, 4), (8, 7), (8, 1), (5, 3)]:
            windows = sliding_windows(0, length, max_length, stride)
            scored = [p for w in windows for p in range(w.end - w.targets, w.end)]
            assert scored == list(range(1, length)), (length, max_length, stride)
            assert all(w.end - w.begin <= max_length for w in windows)


def adds_bos(tokenizer) -> None:
    """Make the tokenizer add its BOS token in front of every text, as Llama's does."""
    from tokenizers.processors import TemplateProcessing

    bos = tokenizer.bos_token
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, tokenizer.bos_token_id)]
    )


def test_prefix_token_scores_the_first_token_of_a_text_without_bos(tiny_handle, write_jsonl):
    tokenizer = tiny_handle.tokenizer
    texts = [*make_texts(6, max_words=40, seed=3), "a", "fox " * 70]
    plain = evaluate(tiny_handle, write_jsonl([{"text": t} for t in texts]), max_length=32)
    prefixed = evaluate(
        tiny_handle, write_jsonl([{"text": t} for t in texts]), max_length=32, prefix_token=True
    )
    written = evaluate(
        tiny_handle,
        write_jsonl([{"text": tokenizer.bos_token + t} for t in texts], name="bos.jsonl"),
        max_length=32,
    )

    lengths = [len(tokenizer(t)["input_ids"]) for t in texts]
    assert tokenizer(texts[0])["input_ids"][0] != tokenizer.bos_token_id
    assert [e.scores["tokens"] for e in prefixed.examples] == lengths
    assert [e.scores["tokens"] for e in plain.examples] == [n - 1 for n in lengths]
    assert prefixed.metrics["tokens"] == plain.metrics["tokens"] + len(texts)
    # A one-token text has nothing to score without the prefix, and one token with it.
    assert lengths[6] == 1
    assert "ppl" not in plain.examples[6].scores
    assert prefixed.examples[6].scores["tokens"] == 1
    # The prefix is the tokenizer's BOS: the same scores as writing it into each text.
    assert prefixed.metrics["tokens"] == written.metrics["tokens"]
    assert_close(prefixed.metrics["nll"], written.metrics["nll"], rel=1e-6)
    for ours, ref in zip(prefixed.examples, written.examples, strict=True):
        assert_close(ours.scores["nll"], ref.scores["nll"], rel=1e-6)


def test_prefix_token_changes_nothing_when_the_tokenizer_adds_bos(tiny_handle, write_jsonl):
    adds_bos(tiny_handle.tokenizer)
    path = write_jsonl([{"text": t} for t in make_texts(6, max_words=40, seed=4)])
    plain = evaluate(tiny_handle, path, max_length=32)
    prefixed = evaluate(tiny_handle, path, max_length=32, prefix_token=True)
    assert [e.scores for e in prefixed.examples] == [e.scores for e in plain.examples]
    assert prefixed.metrics == plain.metrics


def test_prefix_token_falls_back_to_eos_without_a_bos_token(tiny_handle, write_jsonl):
    tokenizer = tiny_handle.tokenizer
    texts = make_texts(4, max_words=20, seed=5)
    written = evaluate(
        tiny_handle, write_jsonl([{"text": tokenizer.eos_token + t} for t in texts], name="e.jl")
    )
    tokenizer.bos_token = None
    assert tokenizer.bos_token_id is None
    prefixed = evaluate(tiny_handle, write_jsonl([{"text": t} for t in texts]), prefix_token=True)
    assert [e.scores for e in prefixed.examples] == [e.scores for e in written.examples]
