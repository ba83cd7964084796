"""evaluate_checkpoint, prepare_all and config_hash: what runners rely on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from evaluators import EvaluatorOutcome, evaluate_checkpoint, prepare_all
from evaluators.base import EvalResult, Evaluator, EvaluatorInputError
from evaluators.perplexity import PerplexityEvaluator
from evaluators.scoring import config_hash


class CrashingEvaluator(Evaluator):
    """An evaluator with a bug: it raises while evaluating."""

    name = "crashing"

    def evaluate(self, handle) -> EvalResult:
        raise RuntimeError("index out of range\n  while scoring row 3")


@pytest.fixture
def perplexity(write_jsonl):
    path = write_jsonl([{"text": "Order 1234 from Alice"}, {"text": "The quick brown fox"}])
    return PerplexityEvaluator(PerplexityEvaluator.Config(data=path, max_length=32))


def test_a_crashing_evaluator_is_recorded_and_the_others_still_run(tiny_handle, perplexity):
    crashing = CrashingEvaluator(CrashingEvaluator.Config())
    seen = []
    outcomes = evaluate_checkpoint(
        handle=tiny_handle,
        evaluators=[("crashing", crashing), ("perplexity", perplexity)],
        progress=lambda name, index, total: seen.append((name, index, total)),
    )

    assert [o.name for o in outcomes] == ["crashing", "perplexity"]
    failed, scored = outcomes
    assert isinstance(failed, EvaluatorOutcome)
    assert not failed.ok and failed.result is None
    assert failed.error == "RuntimeError: index out of range while scoring row 3"
    assert scored.ok and scored.error is None
    assert scored.result is not None and scored.result.metrics["examples"] == 2
    assert scored.result.metrics["ppl"] > 1
    assert all(o.duration_s >= 0 for o in outcomes)
    assert scored.config_hash == config_hash(perplexity)
    assert seen == [("crashing", 0, 2), ("perplexity", 1, 2)]


def test_input_errors_found_while_evaluating_are_recorded_too(tiny_handle, write_jsonl):
    path = write_jsonl(["not json"])
    broken = PerplexityEvaluator(PerplexityEvaluator.Config(data=path))
    [outcome] = evaluate_checkpoint(handle=tiny_handle, evaluators=[("perplexity", broken)])
    assert outcome.error is not None
    assert outcome.error.startswith(f"EvaluatorInputError: {path}:1: invalid JSON")


def test_config_hash_is_stable_and_follows_the_config(write_jsonl):
    path = write_jsonl([{"text": "a"}])

    def build(**config):
        return PerplexityEvaluator(PerplexityEvaluator.Config(data=path, **config))

    first = config_hash(build(batch_size=4))
    assert len(first) == 64 and int(first, 16) >= 0
    assert config_hash(build(batch_size=4)) == first
    # the same values written differently give the same hash
    assert config_hash(build(batch_size=4, stride=None)) == first
    assert config_hash(build(batch_size=8)) != first
    assert config_hash(build(batch_size=4, text_field="body")) != first
    other = write_jsonl([{"text": "a"}], name="other.jsonl")
    assert config_hash(PerplexityEvaluator(PerplexityEvaluator.Config(data=other))) != config_hash(
        PerplexityEvaluator(PerplexityEvaluator.Config(data=path))
    )


def test_config_hash_includes_the_evaluator_name():
    class One(Evaluator):
        name = "one"

        def evaluate(self, handle):
            raise NotImplementedError

    class Two(One):
        name = "two"

    assert config_hash(One(One.Config())) != config_hash(Two(Two.Config()))


def test_prepare_all_raises_the_first_input_error_with_the_evaluator_name(write_jsonl):
    good = PerplexityEvaluator(
        PerplexityEvaluator.Config(data=write_jsonl([{"text": "a"}], name="good.jsonl"))
    )
    bad = write_jsonl([{"text": "a"}, {"txt": "b"}], name="bad.jsonl")
    worse = write_jsonl(["{"], name="worse.jsonl")
    evaluators = [
        ("perplexity", good),
        ("perplexity", PerplexityEvaluator(PerplexityEvaluator.Config(data=bad))),
        ("perplexity", PerplexityEvaluator(PerplexityEvaluator.Config(data=worse))),
    ]
    with pytest.raises(EvaluatorInputError) as caught:
        prepare_all(evaluators)
    assert str(caught.value).startswith(f"evaluators.perplexity: {bad}:2: no 'text' field")


def test_prepare_all_accepts_good_inputs(write_jsonl):
    good = PerplexityEvaluator(PerplexityEvaluator.Config(data=write_jsonl([{"text": "a"}])))
    prepare_all([("perplexity", good)])


def test_importing_evaluators_does_not_import_torch():
    # The spec validator and the CLI import evaluator modules to read their Config.
    code = (
        "import sys, evaluators, evaluators.perplexity, evaluators.json_schema, "
        "evaluators.generation, evaluators.scoring\n"
        "heavy = [m for m in ('torch', 'transformers', 'jsonschema') if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_config_hash_follows_input_file_contents(tmp_path):
    from evaluators.registry import build_evaluator
    from evaluators.scoring import config_hash

    data = tmp_path / "eval.jsonl"
    data.write_text('{"text": "one"}\n')
    evaluator = build_evaluator("perplexity", {"data": str(data)}, {"base_dir": tmp_path})
    before = config_hash(evaluator)
    data.write_text('{"text": "two"}\n')
    assert config_hash(evaluator) != before


def test_config_hash_follows_task_folder_contents(tmp_path):
    from evaluators.scoring import config_hash

    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "task.yaml").write_text("task: a\n")

    class FolderEvaluator(Evaluator):
        name = "folder_probe"

        class Config(Evaluator.Config):
            include_path: Path

        def evaluate(self, handle):  # pragma: no cover - never called
            raise NotImplementedError

    evaluator = FolderEvaluator(FolderEvaluator.Config(include_path=folder))
    before = config_hash(evaluator)
    (folder / "task.yaml").write_text("task: b\n")
    assert config_hash(evaluator) != before
