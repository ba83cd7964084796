"""lm_eval evaluator: same numbers as lm-eval called directly, checked inputs, peft-safe.

Also checks that the `perplexity` evaluator agrees with lm-eval's rolling log-likelihood
when both score the same tokens (see `test_perplexity_equals_lm_eval_rolling_*`).
"""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError

from evaluators.base import EvaluatorInputError, ModelHandle
from evaluators.lm_eval import LmEvalEvaluator
from evaluators.perplexity import PerplexityEvaluator
from evaluators.registry import build_evaluator

TASKS = Path(__file__).resolve().parents[2] / "examples" / "lm_eval_tasks"
MC, GEN = "evalctl_mc_orders", "evalctl_gen_orders"

ROLLING_YAML = """\
task: tiny_rolling
dataset_path: json
dataset_kwargs:
  data_files:
    test: texts.jsonl
test_split: test
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{text}}"
metric_list:
  - metric: word_perplexity
"""


def run(handle: ModelHandle, **config: Any):
    config.setdefault("include_path", TASKS)
    evaluator = LmEvalEvaluator(LmEvalEvaluator.Config(**config))
    evaluator.prepare()
    return evaluator.evaluate(handle)


def direct(model, tokenizer, tasks: list[str], include_path: Path, **kwargs: Any) -> dict:
    """Call lm-eval the documented way, with the settings the evaluator uses by default."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(include_path), include_defaults=False)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=8)
    return lm_eval.simple_evaluate(
        model=lm,
        tasks=tasks,
        task_manager=manager,
        bootstrap_iters=1000,
        log_samples=True,
        **kwargs,
    )


@pytest.mark.parametrize(
    "settings",
    [{}, {"num_fewshot": 2, "limit": 10}],
    ids=["all-docs-zero-shot", "two-shot-limit-10"],
)
def test_metrics_and_examples_are_identical_to_simple_evaluate(
    tiny_handle, tmp_path, monkeypatch, settings
):
    # Run from elsewhere: the evaluator resolves data_files against the task YAML.
    monkeypatch.chdir(tmp_path)
    ours = run(tiny_handle, tasks=[MC, GEN], **settings)
    # lm-eval resolves relative data_files against the working directory.
    monkeypatch.chdir(TASKS)
    ref = direct(tiny_handle.model, tiny_handle.tokenizer, [MC, GEN], TASKS, **settings)

    mc, gen = ref["results"][MC], ref["results"][GEN]
    assert ours.metrics == {
        f"{MC}.acc": mc["acc,none"],
        f"{MC}.acc_stderr": mc["acc_stderr,none"],
        f"{MC}.acc_norm": mc["acc_norm,none"],
        f"{MC}.acc_norm_stderr": mc["acc_norm_stderr,none"],
        f"{MC}.examples": mc["sample_len"],
        f"{GEN}.exact_match.strip": gen["exact_match,strip"],
        f"{GEN}.exact_match.strip_stderr": gen["exact_match_stderr,strip"],
        f"{GEN}.examples": gen["sample_len"],
    }
    assert mc["sample_len"] == settings.get("limit", 40)
    examples = {e.example_id: e for e in ours.examples}
    assert len(examples) == mc["sample_len"] + gen["sample_len"]
    for sample in ref["samples"][MC]:
        example = examples[f"{MC}/{sample['doc_id']}"]
        assert example.scores == {"acc": sample["acc"], "acc_norm": sample["acc_norm"]}
        assert example.details["input"] == sample["arguments"][0][0]
        assert example.details["target"] == sample["doc"]["choices"][sample["doc"]["answer"]]
    for sample in ref["samples"][GEN]:
        example = examples[f"{GEN}/{sample['doc_id']}"]
        assert example.scores == {"exact_match.strip": sample["exact_match"]}
        assert example.details["output"] == sample["filtered_resps"][0]
        assert example.details["target"] == sample["doc"]["customer"]


def test_exact_match_counts_and_the_built_tasks_can_score_again(tiny_handle, tmp_path):
    first = run(tiny_handle, tasks=[GEN], limit=3)
    assert first.metrics[f"{GEN}.exact_match.strip"] == 0.0
    outputs = [e.details["output"] for e in first.examples]
    assert all(outputs)
    # Make the random model's greedy answers the references: each one must now match.
    folder = tmp_path / "tasks"
    folder.mkdir()
    shutil.copy(TASKS / f"{GEN}.yaml", folder)
    rows = [json.loads(line) for line in (TASKS / "orders_gen.jsonl").read_text().splitlines()]
    data = [{**row, "customer": out} for row, out in zip(rows, outputs, strict=False)]
    (folder / "orders_gen.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))
    evaluator = LmEvalEvaluator(LmEvalEvaluator.Config(tasks=[GEN], include_path=folder))
    evaluator.prepare()
    matched = evaluator.evaluate(tiny_handle)
    assert matched.metrics[f"{GEN}.exact_match.strip"] == 1.0
    assert [e.scores for e in matched.examples] == [{"exact_match.strip": 1.0}] * 3
    # The tasks built by prepare() serve the next checkpoint too, with the same results.
    assert evaluator.evaluate(tiny_handle) == matched


def test_lora_model_mid_training_is_scored_and_left_as_it_was(tiny_model, tiny_tokenizer):
    from peft import LoraConfig, get_peft_model

    handle = ModelHandle(model=tiny_model, tokenizer=tiny_tokenizer, model_hash="base")
    base = run(handle, tasks=[MC], limit=8)
    model = get_peft_model(
        tiny_model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.5, target_modules="all-linear")
    )
    model.train()
    model.base_model.model.lm_head.eval()  # mixed modes, as a trainer may leave them
    modes = {name: m.training for name, m in model.named_modules()}
    torch.manual_seed(123)
    rng_before = torch.random.get_rng_state()
    expected_draw = torch.rand(3)
    torch.random.set_rng_state(rng_before)

    lora = ModelHandle(model=model, tokenizer=tiny_tokenizer, model_hash="lora")
    result = run(lora, tasks=[MC], limit=8)

    assert {name: m.training for name, m in model.named_modules()} == modes
    # lm-eval reseeds the global generators; the trainer's next draws must not change.
    assert torch.equal(torch.rand(3), expected_draw)
    # A fresh LoRA adapter (B = 0) computes the base function, and its dropout (p = 0.5)
    # was off while scoring: the scores are the base model's.
    assert result.metrics == base.metrics
    assert [e.scores for e in result.examples] == [e.scores for e in base.examples]


def write_task_folder(folder: Path, yaml_text: str, rows: list[dict] | None = None) -> Path:
    """Write a one-task folder: task.yaml and, unless rows is None, sub/data.jsonl."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "task.yaml").write_text(yaml_text, encoding="utf-8")
    if rows is not None:
        (folder / "sub").mkdir(exist_ok=True)
        data = "".join(json.dumps(row) + "\n" for row in rows)
        (folder / "sub" / "data.jsonl").write_text(data, encoding="utf-8")
    return folder


MINI_TASK = """\
task: mini_task
dataset_path: json
dataset_kwargs:
  data_files:
    test: sub/data.jsonl
test_split: test
output_type: multiple_choice
doc_to_text: "{{q}}"
doc_to_choice: choices
doc_to_target: answer
metric_list:
  - metric: acc
"""


def prepare(folder: Path, tasks: list[str]) -> LmEvalEvaluator:
    evaluator = LmEvalEvaluator(LmEvalEvaluator.Config(tasks=tasks, include_path=folder))
    evaluator.prepare()
    return evaluator


def test_unknown_task_suggests_the_closest_name():
    with pytest.raises(EvaluatorInputError) as info:
        prepare(TASKS, ["evalctl_mc_order"])
    message = str(info.value)
    assert "Unknown lm-eval task 'evalctl_mc_order'. Did you mean 'evalctl_mc_orders'?" in message
    assert "Available: evalctl_gen_orders, evalctl_mc_orders" in message


def test_task_yaml_with_a_syntax_error_is_named_with_its_line(tmp_path):
    folder = write_task_folder(tmp_path / "tasks", MINI_TASK.replace("test_split: test", "x: [1"))
    shutil.copy(TASKS / "evalctl_mc_orders.yaml", folder / "fine.yaml")
    with pytest.raises(EvaluatorInputError, match=r"task\.yaml:\d+:\d+: invalid YAML") as info:
        prepare(folder, ["mini_task"])
    assert "\n" not in str(info.value)
    assert str(folder / "task.yaml") in str(info.value)


def test_missing_include_path_is_rejected_by_the_config_and_by_prepare(tmp_path):
    missing = tmp_path / "no-such-folder"
    with pytest.raises(ValidationError, match="path not found"):
        LmEvalEvaluator.Config(tasks=[MC], include_path=missing)
    unchecked = LmEvalEvaluator.Config.model_validate(
        {"tasks": [MC], "include_path": missing}, context={"check_files": False}
    )
    with pytest.raises(EvaluatorInputError, match="include_path: folder not found"):
        LmEvalEvaluator(unchecked).prepare()


def test_a_missing_data_file_names_the_yaml_and_the_resolved_path(tmp_path):
    folder = write_task_folder(tmp_path / "tasks", MINI_TASK)  # no sub/data.jsonl
    with pytest.raises(EvaluatorInputError) as info:
        prepare(folder, ["mini_task"])
    message = str(info.value)
    assert str(folder / "task.yaml") in message
    assert f"data file not found: {folder / 'sub' / 'data.jsonl'}" in message


def test_a_data_file_lm_eval_cannot_read_is_reported_before_model_work(tmp_path):
    folder = write_task_folder(tmp_path / "tasks", MINI_TASK, [{"q": "1 + 1 =", "answer": 0}])
    with (folder / "sub" / "data.jsonl").open("a") as fh:
        fh.write('{"q": "cut off\n')
    with pytest.raises(EvaluatorInputError, match=r"task 'mini_task' \(.*task\.yaml\): ") as info:
        prepare(folder, ["mini_task"])
    assert "\n" not in str(info.value)


def test_spec_relative_include_path_and_yaml_relative_data_files(tmp_path, tiny_handle):
    rows = [{"q": f"{i} + 1 =", "choices": [str(i), str(i + 1)], "answer": 1} for i in range(6)]
    write_task_folder(tmp_path / "spec" / "tasks", MINI_TASK, rows)
    evaluator = build_evaluator(
        "lm_eval",
        {"tasks": ["mini_task"], "include_path": "tasks"},
        context={"base_dir": tmp_path / "spec"},
    )
    assert evaluator.config.include_path == tmp_path / "spec" / "tasks"
    evaluator.prepare()
    result = evaluator.evaluate(tiny_handle)
    assert result.metrics["mini_task.examples"] == 6
    assert sorted(e.example_id for e in result.examples) == [f"mini_task/{i}" for i in range(6)]


def test_a_task_source_is_required():
    with pytest.raises(ValidationError, match="set include_path"):
        LmEvalEvaluator.Config(tasks=[MC])
    with pytest.raises(ValidationError):
        LmEvalEvaluator.Config(tasks=[], include_path=TASKS)


# --- perplexity agreement --------------------------------------------------------------

WINDOW = 16  # lm-eval max_length; perplexity scores the same tokens with max_length 17


def rolling_texts(tokenizer, *, n: int = 12, seed: int = 0) -> list[str]:
    """Texts inside one window, and longer ones whose length is a multiple of WINDOW.

    lm-eval's rolling windows are disjoint (one token of carried context) except the last,
    which it refills to full length; perplexity's stride-WINDOW windows are the same, so
    they score tokens with identical context when the last window is full.
    """
    rng = random.Random(seed)
    words = ["order", "alice", "smith", "widgets", "contact", "carol", "jones", "phone"]
    short, long = [], []
    while len(short) < n or len(long) < n:
        text = " ".join(rng.choice(words) for _ in range(rng.randint(2, 30)))
        count = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        if count <= WINDOW and len(short) < n:
            short.append(text)
        elif count > WINDOW and count % WINDOW == 0 and len(long) < n:
            long.append(text)
    return short + long


def perplexity_of(handle: ModelHandle, texts: list[str], path: Path, **config: Any):
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    config = PerplexityEvaluator.Config(data=path, max_length=WINDOW + 1, stride=WINDOW, **config)
    evaluator = PerplexityEvaluator(config)
    evaluator.prepare()
    return evaluator.evaluate(handle)


def assert_close(a: float, b: float, rel: float = 1e-4) -> None:
    assert abs(a - b) <= rel * abs(b), f"{a} vs {b}"


@pytest.mark.parametrize(
    ("bos_in_text", "prefix_token"),
    [(False, True), (True, False), (True, True)],
    ids=["prefix-token", "bos-written-into-texts", "prefix-token-not-doubled"],
)
def test_perplexity_equals_lm_eval_rolling_task_run_by_the_evaluator(
    tiny_handle, tmp_path, bos_in_text, prefix_token
):
    # lm-eval predicts every token of the text after a prefix token (the BOS). The tiny
    # tokenizer adds no BOS, like SmolLM2's: perplexity needs prefix_token (or the BOS
    # written into its texts) to score the text's first token too.
    tokenizer = tiny_handle.tokenizer
    assert tokenizer("order")["input_ids"][0] != tokenizer.bos_token_id
    texts = rolling_texts(tokenizer)
    folder = tmp_path / "rolling"
    folder.mkdir()
    (folder / "tiny_rolling.yaml").write_text(ROLLING_YAML, encoding="utf-8")
    (folder / "texts.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    lm_result = run(
        tiny_handle, tasks=["tiny_rolling"], include_path=folder, max_length=WINDOW, batch_size=4
    )
    scored = [tokenizer.bos_token + t for t in texts] if bos_in_text else texts
    ours = perplexity_of(tiny_handle, scored, tmp_path / "p.jl", prefix_token=prefix_token)

    by_id = {e.example_id: e for e in lm_result.examples}
    total_ll, total_tokens = 0.0, 0
    for index, (text, example) in enumerate(zip(texts, ours.examples, strict=True)):
        loglikelihood = by_id[f"tiny_rolling/{index}"].scores["loglikelihood"]
        tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        assert example.scores["tokens"] == tokens
        assert_close(example.scores["nll"] * tokens, -loglikelihood)
        words = len(text.split())
        assert_close(
            by_id[f"tiny_rolling/{index}"].scores["word_perplexity"],
            math.exp(-loglikelihood / words),
        )
        total_ll += loglikelihood
        total_tokens += tokens
    assert ours.metrics["tokens"] == total_tokens
    assert_close(ours.metrics["ppl"], math.exp(-total_ll / total_tokens))


def test_perplexity_equals_hflm_loglikelihood_rolling_with_a_bos_tokenizer(tiny_handle, tmp_path):
    # A Llama-style tokenizer that adds BOS: perplexity scores plain texts; HFLM is told
    # not to add BOS itself (it prepends its prefix token, the same BOS).
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    from tokenizers.processors import TemplateProcessing

    tokenizer = tiny_handle.tokenizer
    bos = tokenizer.bos_token
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, tokenizer.bos_token_id)]
    )
    texts = rolling_texts(tokenizer, seed=1)
    ours = perplexity_of(tiny_handle, texts, tmp_path / "p.jsonl")

    lm = HFLM(
        pretrained=tiny_handle.model,
        tokenizer=tokenizer,
        max_length=WINDOW,
        batch_size=4,
        add_bos_token=False,
    )
    requests = [
        Instance(request_type="loglikelihood_rolling", doc={}, arguments=(t,), idx=i)
        for i, t in enumerate(texts)
    ]
    lls = lm.loglikelihood_rolling(requests, disable_tqdm=True)
    counts = [len(lm.tok_encode(t)) for t in texts]
    for example, ll, count in zip(ours.examples, lls, counts, strict=True):
        assert example.scores["tokens"] == count
        assert_close(example.scores["nll"] * count, -ll)
    assert_close(ours.metrics["ppl"], math.exp(-sum(lls) / sum(counts)))
