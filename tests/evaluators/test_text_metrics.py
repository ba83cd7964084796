"""text_metrics: the shipped metric modules (offline, agreeing with rouge_score and
sacrebleu), scoring given outputs, bad inputs, and one end-to-end run on the tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sacrebleu
from pydantic import ValidationError
from rouge_score import rouge_scorer

from evaluators.base import EvaluatorInputError
from evaluators.metrics import METRICS, load_metric, metric_path
from evaluators.registry import build_evaluator
from evaluators.text_metrics import TextMetricsEvaluator, TextRow, read_rows, score_texts

PREDICTIONS = [
    "the cat sat on the mat",
    "a quick brown fox jumped over the dogs",
    "Sales rose by twelve percent this quarter.",
    "",
]
REFERENCES = [
    "the cat is sitting on the mat",
    "the quick brown fox jumps over the lazy dog",
    "Sales grew 12 percent in the quarter.",
    "nothing was said",
]
REPO = Path(__file__).resolve().parents[2]


def rows_for(references: list[str]) -> list[TextRow]:
    return [
        TextRow(example_id=f"r{i}", input_text=f"prompt {i}", reference=ref)
        for i, ref in enumerate(references)
    ]


def test_metric_modules_load_from_the_project_without_touching_the_network(tmp_path):
    # A fresh process with the offline switches unset and every socket connection refused:
    # load_metric must switch the hub off itself and never try to connect.
    script = textwrap.dedent(
        """
        import json, os, socket
        attempts = []
        def refuse(*args, **kwargs):
            attempts.append(repr(args[:2]))
            raise OSError("network disabled in this test")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        from evaluators.metrics import METRICS, load_metric
        scores = {}
        for name in METRICS:
            metric = load_metric(name)
            text = "the cat sat on the mat by the door"
            result = metric.compute(predictions=[text], references=[text])
            scores[name] = result
        print(json.dumps({"attempts": attempts, "scores": scores,
                          "offline": os.environ.get("HF_HUB_OFFLINE")}))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env["HF_HOME"] = str(tmp_path / "hf")  # an empty cache: nothing loaded before helps
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["attempts"] == []
    assert report["offline"] == "1"
    assert report["scores"]["rouge"]["rouge1"] == 1.0
    assert report["scores"]["bleu"]["score"] == pytest.approx(100.0)
    assert report["scores"]["chrf"]["score"] == pytest.approx(100.0)
    assert report["scores"]["exact_match"]["exact_match"] == 1.0


def test_each_metric_is_a_module_folder_named_after_it():
    for name in METRICS:
        assert (metric_path(name) / f"{name}.py").is_file()
    with pytest.raises(ValueError, match="Did you mean 'rouge'"):
        metric_path("rogue")


@pytest.mark.parametrize("use_stemmer", [False, True])
def test_rouge_agrees_with_rouge_score(use_stemmer):
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=use_stemmer)
    direct = [scorer.score(ref, pred) for ref, pred in zip(REFERENCES, PREDICTIONS, strict=True)]
    rouge = load_metric("rouge")
    per_example = rouge.compute(
        predictions=PREDICTIONS,
        references=REFERENCES,
        rouge_types=["rouge1", "rouge2", "rougeL"],
        use_stemmer=use_stemmer,
        use_aggregator=False,
    )
    mean = rouge.compute(predictions=PREDICTIONS, references=REFERENCES, use_stemmer=use_stemmer)
    for key in ("rouge1", "rouge2", "rougeL"):
        expected = [d[key].fmeasure for d in direct]
        assert per_example[key] == pytest.approx(expected)
        assert mean[key] == pytest.approx(sum(expected) / len(expected))
    assert set(mean) == {"rouge1", "rouge2", "rougeL", "rougeLsum"}


def test_rouge_known_values_stemming_and_multiple_references():
    rouge = load_metric("rouge")
    # 2 of 3 unigrams shared each way: P = R = F = 2/3; one shared bigram of two.
    scores = rouge.compute(predictions=["the cat sat"], references=["the cat ran"])
    assert scores["rouge1"] == pytest.approx(2 / 3)
    assert scores["rouge2"] == pytest.approx(1 / 2)
    plain = rouge.compute(predictions=["cats running"], references=["cat runs"])["rouge1"]
    stemmed = rouge.compute(
        predictions=["cats running"], references=["cat runs"], use_stemmer=True
    )["rouge1"]
    assert (plain, stemmed) == (0.0, 1.0)
    best = rouge.compute(predictions=["the cat sat"], references=[["a dog", "the cat sat"]])
    assert best["rouge1"] == 1.0


def test_bleu_is_sacrebleu_corpus_bleu():
    bleu = load_metric("bleu").compute(predictions=PREDICTIONS, references=REFERENCES)
    direct = sacrebleu.corpus_bleu(PREDICTIONS, [REFERENCES])
    assert bleu["score"] == pytest.approx(direct.score)
    assert bleu["counts"] == list(direct.counts)
    assert 0 < bleu["score"] < 100
    two_refs = load_metric("bleu").compute(
        predictions=PREDICTIONS[:2],
        references=[[r, p] for r, p in zip(REFERENCES, PREDICTIONS, strict=True)][:2],
    )
    assert two_refs["score"] == pytest.approx(100.0)


def test_chrf_corpus_and_sentence_scores_are_sacrebleus():
    chrf = load_metric("chrf")
    corpus = chrf.compute(predictions=PREDICTIONS, references=REFERENCES)["score"]
    sentences = chrf.compute(predictions=PREDICTIONS, references=REFERENCES, use_aggregator=False)[
        "score"
    ]
    assert corpus == pytest.approx(sacrebleu.corpus_chrf(PREDICTIONS, [REFERENCES]).score)
    assert sentences == pytest.approx(
        [
            sacrebleu.sentence_chrf(p, [r]).score
            for p, r in zip(PREDICTIONS, REFERENCES, strict=True)
        ]
    )
    plus = chrf.compute(predictions=PREDICTIONS, references=REFERENCES, word_order=2)["score"]
    assert plus == pytest.approx(
        sacrebleu.corpus_chrf(PREDICTIONS, [REFERENCES], word_order=2).score
    )


def test_exact_match_options():
    em = load_metric("exact_match")
    preds, refs = ["Paris.", "paris", "Room 12"], ["paris", "paris", "room 7"]
    assert em.compute(predictions=preds, references=refs)["exact_match"] == pytest.approx(1 / 3)
    assert em.compute(predictions=preds, references=refs, use_aggregator=False) == {
        "exact_match": [0.0, 1.0, 0.0]
    }
    loose = em.compute(
        predictions=preds,
        references=refs,
        ignore_case=True,
        ignore_punctuation=True,
        ignore_numbers=True,
        use_aggregator=False,
    )
    assert loose["exact_match"] == [1.0, 1.0, 1.0]
    assert (
        em.compute(
            predictions=["The answer: 4"], references=["4"], regexes_to_ignore=[r"^The answer: "]
        )["exact_match"]
        == 1.0
    )


def test_score_texts_reports_corpus_metrics_and_per_example_scores():
    result = score_texts(
        PREDICTIONS, rows_for(REFERENCES), ["rouge", "bleu", "chrf", "exact_match"]
    )
    assert set(result.metrics) == {"rouge1", "rouge2", "rougeL", "bleu", "chrf", "exact_match"}
    assert result.metrics["bleu"] == pytest.approx(
        sacrebleu.corpus_bleu(PREDICTIONS, [REFERENCES]).score
    )
    assert [e.example_id for e in result.examples] == ["r0", "r1", "r2", "r3"]
    for example in result.examples:
        # BLEU is corpus-level only: no example carries it.
        assert set(example.scores) == {"rouge1", "rouge2", "rougeL", "chrf", "exact_match"}
    rouge1 = [e.scores["rouge1"] for e in result.examples]
    assert result.metrics["rouge1"] == pytest.approx(sum(rouge1) / len(rouge1))
    assert result.examples[3].scores["rouge1"] == 0.0  # the empty output
    assert result.examples[1].details == {
        "input": "prompt 1",
        "output": PREDICTIONS[1],
        "reference": REFERENCES[1],
    }


def test_a_perfect_answer_scores_full_marks_despite_surrounding_whitespace():
    refs = ["The council approved new bike lanes.", "Sales grew."]
    result = score_texts([f"  {r}\n" for r in refs], rows_for(refs), ["rouge", "exact_match"])
    assert result.metrics == {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0, "exact_match": 1.0}
    wrong = score_texts(["Completely different words.", "No."], rows_for(refs), ["exact_match"])
    assert wrong.metrics == {"exact_match": 0.0}


def test_only_the_chosen_metric_families_are_computed():
    result = score_texts(PREDICTIONS, rows_for(REFERENCES), ["bleu"])
    assert set(result.metrics) == {"bleu"}
    assert all(e.scores == {} for e in result.examples)
    with pytest.raises(ValueError, match="3 outputs for 4 rows"):
        score_texts(PREDICTIONS[:3], rows_for(REFERENCES), ["bleu"])


def test_config_defaults_to_every_metric_and_rejects_unknown_ones(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"input_text": "x", "reference": "y"}\n')
    evaluator = build_evaluator("text_metrics", {"data": str(data)})
    assert isinstance(evaluator, TextMetricsEvaluator)
    assert evaluator.config.metrics == ["rouge", "bleu", "chrf", "exact_match"]
    with pytest.raises(ValidationError):
        TextMetricsEvaluator.Config(data=data, metrics=["meteor"])
    with pytest.raises(ValidationError):
        TextMetricsEvaluator.Config(data=data, metrics=[])


def test_rows_accept_prompt_and_id(write_jsonl):
    path = write_jsonl(
        [
            {"id": "a", "prompt": "Summarize: x", "reference": "x"},
            {"input_text": "y", "reference": ""},
        ]
    )
    rows = read_rows(path)
    assert [(r.example_id, r.input_text, r.reference, r.line) for r in rows] == [
        ("a", "Summarize: x", "x", 1),
        ("2", "y", "", 2),
    ]
    assert len(read_rows(path, limit=1)) == 1


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"input_text": "a", "reference": "b"}', '{"input_text": "c"}'], r":2: .*no 'reference'"),
        (['{"input_text": "a", "reference": ["b"]}'], r":1: reference must be a string, got array"),
        (['{"reference": "b"}'], r":1: row has no 'input_text' \(or 'prompt'\)"),
        (['{"input_text": "a", "reference": "b"}', "{not json"], r":2: invalid JSON"),
        (['{"id": 1, "input_text": "a", "reference": "b"}'] * 2, r":2: duplicate id '1'"),
    ],
)
def test_bad_rows_name_file_and_line(write_jsonl, lines, message):
    path = write_jsonl(lines)
    evaluator = TextMetricsEvaluator(TextMetricsEvaluator.Config(data=path))
    with pytest.raises(EvaluatorInputError, match=str(path).replace(".", r"\.") + message):
        evaluator.prepare()


def test_evaluate_generates_and_scores_every_row_with_the_tiny_model(tiny_handle):
    path = REPO / "examples" / "evaluators" / "summaries.jsonl"
    config = TextMetricsEvaluator.Config(data=path, max_new_tokens=8, batch_size=4, limit=6)
    result = TextMetricsEvaluator(config).evaluate(tiny_handle)
    assert set(result.metrics) == {"rouge1", "rouge2", "rougeL", "bleu", "chrf", "exact_match"}
    assert all(0.0 <= v <= 100.0 for v in result.metrics.values())
    assert 0.0 <= result.metrics["rouge1"] <= 1.0
    assert [e.example_id for e in result.examples] == [f"sum-{i:02d}" for i in range(1, 7)]
    for example in result.examples:
        assert set(example.details) == {"input", "output", "reference"}
        assert isinstance(example.details["output"], str)
        assert example.details["input"].startswith("Summarize in one sentence:")
        assert 0.0 <= example.scores["chrf"] <= 100.0
