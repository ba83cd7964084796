"""classification: label parsing, metrics against scikit-learn, log-likelihood choices
checked against the model's own log-probabilities, bad inputs, end-to-end on the tiny model."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from sklearn import metrics as skm

from evaluators.base import EvaluatorInputError, ModelHandle
from evaluators.classification import (
    ClassificationEvaluator,
    LabelRow,
    confusion_matrix,
    label_metrics,
    parse_label,
    read_rows,
    score_labels,
    score_logprobs,
)
from evaluators.loglikelihood import continuation_logprobs, encode_pair
from evaluators.registry import build_evaluator

LABELS = ["sarcasm", "no_sarcasm"]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "evaluators" / "sarcasm.jsonl"


def rows_for(golds: list[str], cluster: str | None = None) -> list[LabelRow]:
    return [
        LabelRow(example_id=f"r{i}", input_text=f"text {i}", label=g, cluster=cluster)
        for i, g in enumerate(golds)
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sarcasm", "sarcasm"),
        ("no_sarcasm", "no_sarcasm"),  # not read as "sarcasm" inside it
        ("NO_SARCASM.", "no_sarcasm"),
        ("Label: Sarcasm!", "sarcasm"),
        ("no sarcasm here", "no_sarcasm"),  # space for underscore
        ("no-sarcasm", "no_sarcasm"),
        ("(sarcasm)", "sarcasm"),
        ("It is sarcasm, not no_sarcasm", "sarcasm"),  # the earliest label wins
        ("no_sarcasm, or maybe sarcasm", "no_sarcasm"),
        ("sarcastic", None),  # whole words only
        ("sarcasms", None),
        ("I cannot tell.", None),
        ("", None),
        ("not_sarcasm", None),
    ],
)
def test_parse_label(text, expected):
    assert parse_label(text, LABELS) == expected


def test_parse_label_prefers_the_longest_label_at_the_same_position():
    assert parse_label("very positive review", ["positive", "very positive", "very"]) == (
        "very positive"
    )
    assert parse_label("C++ it is", ["C", "C++"]) == "C++"


def test_metrics_agree_with_scikit_learn():
    labels = ["pos", "neg", "neutral"]
    rng = random.Random(7)
    gold = [rng.choice(labels) for _ in range(60)]
    predicted = [rng.choice([*labels, None]) if rng.random() < 0.6 else g for g in gold]
    ours = label_metrics(gold, predicted, labels, unparsed_column=True)
    sk_pred = ["<none>" if p is None else p for p in predicted]
    p, r, f, _ = skm.precision_recall_fscore_support(gold, sk_pred, labels=labels, zero_division=0)
    for i, label in enumerate(labels):
        assert ours[f"precision.{label}"] == pytest.approx(p[i])
        assert ours[f"recall.{label}"] == pytest.approx(r[i])
        assert ours[f"f1.{label}"] == pytest.approx(f[i])
    assert ours["macro_f1"] == pytest.approx(
        skm.f1_score(gold, sk_pred, labels=labels, average="macro", zero_division=0)
    )
    assert ours["accuracy"] == pytest.approx(skm.accuracy_score(gold, sk_pred))
    assert ours["unparsed_rate"] == pytest.approx(predicted.count(None) / len(predicted))
    sk_matrix = skm.confusion_matrix(gold, sk_pred, labels=[*labels, "<none>"])
    assert confusion_matrix(gold, predicted, labels, unparsed_column=True) == (
        sk_matrix[:3].tolist()
    )


def test_a_label_never_predicted_scores_zero_not_an_error():
    ours = label_metrics(["a", "a", "b"], ["a", "a", "a"], ["a", "b"], unparsed_column=False)
    assert ours["precision.b"] == ours["recall.b"] == ours["f1.b"] == 0.0
    assert ours["f1.a"] == pytest.approx(0.8)
    assert ours["macro_f1"] == pytest.approx(0.4)
    assert ours["confusion.b.a"] == 1.0
    assert "confusion.a.unparsed" not in ours


def test_score_labels_parses_answers_and_counts_unparsed_as_wrong():
    outputs = ["Sarcasm.", "no_sarcasm", "I am not sure", "sarcasm"]
    result = score_labels(
        outputs, rows_for(["sarcasm", "no_sarcasm", "sarcasm", "no_sarcasm"], "c"), LABELS
    )
    assert [e.scores for e in result.examples] == [
        {"correct": 1.0},
        {"correct": 1.0},
        {"correct": 0.0},
        {"correct": 0.0},
    ]
    assert result.examples[2].details == {
        "input": "text 2",
        "output": "I am not sure",
        "gold": "sarcasm",
        "predicted": None,
        "cluster": "c",
    }
    m = result.metrics
    assert m["accuracy"] == 0.5
    assert m["unparsed_rate"] == 0.25
    assert (m["confusion.sarcasm.sarcasm"], m["confusion.sarcasm.unparsed"]) == (1.0, 1.0)
    assert (m["confusion.no_sarcasm.sarcasm"], m["confusion.no_sarcasm.no_sarcasm"]) == (1.0, 1.0)
    assert m["recall.sarcasm"] == 0.5 and m["precision.sarcasm"] == 0.5


def test_score_logprobs_picks_the_likeliest_label_and_reports_the_margin():
    logprobs = [
        {"sarcasm": -1.0, "no_sarcasm": -3.5},
        {"sarcasm": -0.5, "no_sarcasm": -2.0},
    ]
    result = score_logprobs(logprobs, rows_for(["sarcasm", "no_sarcasm"]), LABELS)
    assert [e.details["predicted"] for e in result.examples] == ["sarcasm", "sarcasm"]
    assert [e.scores for e in result.examples] == [
        {"correct": 1.0, "margin": 2.5},
        {"correct": 0.0, "margin": -1.5},
    ]
    assert result.examples[0].details["logprobs"] == logprobs[0]
    assert "cluster" not in result.examples[0].details
    assert result.metrics["unparsed_rate"] == 0.0
    assert "confusion.sarcasm.unparsed" not in result.metrics


def test_rows_keep_id_cluster_and_line(write_jsonl):
    path = write_jsonl(
        [
            {"id": "x", "prompt": "Is it?", "label": "sarcasm", "cluster": 3},
            {"input_text": "Fine.", "label": "no_sarcasm"},
        ]
    )
    rows = read_rows(path, LABELS)
    assert rows == [
        LabelRow("x", "Is it?", "sarcasm", "3", 1),
        LabelRow("2", "Fine.", "no_sarcasm", None, 2),
    ]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (
            ['{"input_text": "a", "label": "sarcasm"}', '{"input_text": "b", "label": "irony"}'],
            r":2: label 'irony' is not one of the labels: sarcasm, no_sarcasm",
        ),
        (['{"input_text": "a"}'], r":1: row has no 'label' field"),
        (['{"input_text": "a", "label": 1}'], r":1: label must be a string, got number"),
        (['{"label": "sarcasm"}'], r":1: row has no 'input_text' \(or 'prompt'\)"),
        (['{"input_text": "a", "label": "sarcasm"}', "[1, 2]"], r":2: expected a JSON object"),
        (['{"input_text": "a", "label": "sarcasm", "cluster": [1]}'], r":1: cluster must be"),
    ],
)
def test_bad_rows_name_file_and_line(write_jsonl, lines, message):
    path = write_jsonl(lines)
    evaluator = ClassificationEvaluator(ClassificationEvaluator.Config(data=path, labels=LABELS))
    with pytest.raises(EvaluatorInputError, match=str(path).replace(".", r"\.") + message):
        evaluator.prepare()


@pytest.mark.parametrize(
    "labels",
    [
        ["sarcasm"],
        ["sarcasm", "Sarcasm"],
        ["no sarcasm", "no_sarcasm"],
        ["a", " "],
        ["a", "unparsed"],
    ],
)
def test_config_rejects_label_sets_the_parser_cannot_tell_apart(labels):
    with pytest.raises(ValidationError):
        ClassificationEvaluator.Config(data=EXAMPLE, labels=labels)


def test_encode_pair_scores_only_the_continuation_and_moves_whitespace(tiny_tokenizer):
    spaced = encode_pair(tiny_tokenizer, "Label: ", "sarcasm", add_special_tokens=False)
    joined = encode_pair(tiny_tokenizer, "Label:", " sarcasm", add_special_tokens=False)
    assert spaced == joined
    tail = tiny_tokenizer.decode(joined.ids[-joined.scored :])
    assert tail == " sarcasm"
    assert tiny_tokenizer.decode(joined.ids[: -joined.scored]) == "Label:"
    # A chat template's assistant header ends in a newline: it stays in the context.
    chat = encode_pair(tiny_tokenizer, "assistant\n", "sarcasm", add_special_tokens=False)
    assert tiny_tokenizer.decode(chat.ids[-chat.scored :]) == "sarcasm"
    with pytest.raises(ValueError, match="empty continuation"):
        encode_pair(tiny_tokenizer, "Label:", "")
    with pytest.raises(ValueError, match="context must not be empty"):
        encode_pair(tiny_tokenizer, "", "sarcasm", add_special_tokens=False)


def direct_logprob(model, tokenizer, context: str, continuation: str) -> float:
    """Score one pair alone, unpadded, straight from the model's logits."""
    enc = encode_pair(tokenizer, context, continuation)
    ids = torch.tensor([enc.ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    n = len(enc.ids)
    return sum(float(logprobs[t - 1, enc.ids[t]]) for t in range(n - enc.scored, n))


def test_batched_continuation_logprobs_equal_the_models_own(tiny_model, tiny_tokenizer):
    pairs = [
        ("Order 1234 from Alice Smith. Label:", " sarcasm"),
        ("Hi", "no_sarcasm"),
        ("The quick brown fox jumps over the lazy dog. Answer: ", "no_sarcasm"),
        ("x", "sarcasm"),
    ]
    batched = continuation_logprobs(tiny_model, tiny_tokenizer, pairs, batch_size=3)
    expected = [direct_logprob(tiny_model, tiny_tokenizer, c, k) for c, k in pairs]
    assert batched == pytest.approx(expected, abs=1e-3)
    assert all(v < 0 for v in batched)


def test_loglikelihood_picks_the_label_the_model_prefers(tiny_handle, write_jsonl):
    texts = [json.loads(line)["input_text"] for line in EXAMPLE.read_text().splitlines()[:6]]
    golds = ["sarcasm", "no_sarcasm"] * 3
    path = write_jsonl([{"input_text": t, "label": g} for t, g in zip(texts, golds, strict=True)])
    config = ClassificationEvaluator.Config(
        data=path, labels=LABELS, method="loglikelihood", batch_size=4
    )
    result = ClassificationEvaluator(config).evaluate(tiny_handle)
    model, tokenizer = tiny_handle.model, tiny_handle.tokenizer
    for example, text, gold in zip(result.examples, texts, golds, strict=True):
        prompt = tiny_handle.render_prompt(text)
        direct = {label: direct_logprob(model, tokenizer, prompt, label) for label in LABELS}
        assert example.details["logprobs"] == pytest.approx(direct, abs=1e-3)
        assert example.details["predicted"] == max(direct, key=direct.__getitem__)
        other = next(label for label in LABELS if label != gold)
        assert example.scores["margin"] == pytest.approx(direct[gold] - direct[other], abs=1e-3)


def test_loglikelihood_follows_the_model_when_it_is_forced(tiny_model, tiny_tokenizer, write_jsonl):
    # With a zeroed output layer every token has probability 1/V, so a label's log-likelihood
    # is -(its token count) * log V: the label with fewer tokens must win, by a known margin.
    with torch.no_grad():
        tiny_model.lm_head.weight.zero_()
    handle = ModelHandle(model=tiny_model, tokenizer=tiny_tokenizer, model_hash="zero")
    path = write_jsonl([{"input_text": "Sentence: fine.", "label": "no_sarcasm"}])
    config = ClassificationEvaluator.Config(
        data=path, labels=LABELS, method="loglikelihood", raw_prompts=True
    )
    example = ClassificationEvaluator(config).evaluate(handle).examples[0]
    count = {
        label: encode_pair(tiny_tokenizer, "Sentence: fine.", label).scored for label in LABELS
    }
    assert count["sarcasm"] < count["no_sarcasm"]
    assert example.details["predicted"] == "sarcasm"
    log_v = math.log(tiny_model.config.vocab_size)
    assert example.scores["margin"] == pytest.approx(
        (count["sarcasm"] - count["no_sarcasm"]) * log_v, rel=1e-4
    )


def test_generate_end_to_end_with_the_tiny_model(tiny_handle):
    evaluator = build_evaluator(
        "classification",
        {"data": str(EXAMPLE), "labels": LABELS, "max_new_tokens": 4, "batch_size": 8, "limit": 10},
    )
    assert isinstance(evaluator, ClassificationEvaluator)
    evaluator.prepare()
    result = evaluator.evaluate(tiny_handle)
    keys = {"accuracy", "macro_f1", "unparsed_rate"}
    keys |= {f"{kind}.{label}" for kind in ("precision", "recall", "f1") for label in LABELS}
    keys |= {f"confusion.{g}.{p}" for g in LABELS for p in [*LABELS, "unparsed"]}
    assert set(result.metrics) == keys
    assert sum(v for k, v in result.metrics.items() if k.startswith("confusion.")) == 10
    assert len(result.examples) == 10
    for example in result.examples:
        assert set(example.details) == {"input", "output", "gold", "predicted", "cluster"}
        assert example.scores["correct"] == float(
            example.details["predicted"] == example.details["gold"]
        )
    artifact = json.loads(Path(result.artifacts["confusion_matrix"]).read_text())
    assert artifact["labels"] == LABELS
    assert artifact["predicted"] == [*LABELS, "unparsed"]
    assert sum(map(sum, artifact["matrix"])) == 10


def test_the_confusion_artifact_lives_under_the_cache_dir(tiny_handle, tmp_path, write_jsonl):
    tiny_handle.cache_dir = tmp_path / "cache"
    path = write_jsonl([{"input_text": "Nice.", "label": "no_sarcasm"}])
    config = ClassificationEvaluator.Config(data=path, labels=LABELS, method="loglikelihood")
    result = ClassificationEvaluator(config).evaluate(tiny_handle)
    artifact = Path(result.artifacts["confusion_matrix"])
    assert artifact.parent == tmp_path / "cache" / "artifacts" / "classification"
    matrix = json.loads(artifact.read_text())["matrix"]
    predicted = result.examples[0].details["predicted"]
    assert matrix[1][LABELS.index(predicted)] == 1
