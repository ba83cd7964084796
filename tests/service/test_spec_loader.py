"""Tests for `service.spec_loader`: valid specs load, broken ones say file:line:col what is wrong.

The broken specs are files in `broken_specs/`; each starts with `# expect: LINE:COL: field:
message-substring` lines, and the spec must fail with exactly those problems. The files they
name (`data/*.jsonl`, `model/`) exist next to them, so only the intended problem fires.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from service.errors import EvalctlError
from service.spec_loader import SpecError, SpecProblem, dump_problems_json, load_spec

HERE = Path(__file__).parent
CORPUS = sorted((HERE / "broken_specs").glob("*.yaml"))
EXPECT = re.compile(r"^# expect: (\d+):(\d+): (\S+): (.+)$")

VALID_SPEC = """\
# A complete spec: every section, relative paths.
name: demo-run
description: fine-tune on the toy data
base_model: model
data:
  train: data/train.jsonl
  eval: data/eval.jsonl
  format: chat
training:
  method: lora
  lora: {r: 4, target_modules: [q_proj, v_proj]}
  learning_rate: 0.0005
  early_stopping_patience: 2
evaluators:
  - perplexity:
      data: data/eval.jsonl
tracking:
  tags: {team: nlp}
best_checkpoint: {metric: perplexity.ppl, mode: min}
"""


def _write_experiment(folder: Path, text: str = VALID_SPEC) -> Path:
    """Write a spec plus the data and model files it names into `folder`; return the spec."""
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "train.jsonl").write_text('{"messages": []}\n')
    (folder / "data" / "eval.jsonl").write_text('{"text": "held out"}\n')
    (folder / "model").mkdir()
    (folder / "model" / "config.json").write_text("{}\n")
    spec = folder / "spec.yaml"
    spec.write_text(text)
    return spec


def _expectations(path: Path) -> list[tuple[str, str]]:
    """Return (`LINE:COL: field: ` prefix, message substring) for each `# expect:` line."""
    found = []
    for line in path.read_bytes().decode("utf-8", "replace").splitlines():
        match = EXPECT.match(line)
        if match:
            line_no, col, field, message = match.groups()
            found.append((f"{line_no}:{col}: {field}: ", message))
    return found


def _qlora_can_run() -> bool:
    if importlib.util.find_spec("bitsandbytes") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_broken_spec_reports_expected_problems(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if path.stem == "qlora_without_cuda" and _qlora_can_run():
        pytest.skip("this machine can run qlora")
    expected = _expectations(path)
    assert expected, f"{path.name} has no '# expect:' lines"
    monkeypatch.chdir(HERE)  # the spec is given relative to here, as a user would type it
    source = f"broken_specs/{path.name}"

    with pytest.raises(SpecError) as info:
        load_spec(source)

    lines = str(info.value).splitlines()
    assert all(line.startswith(f"{source}:") for line in lines), lines
    for prefix, message in expected:
        hits = [line for line in lines if line.startswith(f"{source}:{prefix}")]
        assert any(message in line for line in hits), (prefix + message, lines)
    assert len(lines) == len(expected), lines


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 25


def test_valid_spec_resolves_paths_against_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec_path = _write_experiment(tmp_path / "exp")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    spec = load_spec(spec_path)

    folder = (tmp_path / "exp").resolve()
    assert spec.name == "demo-run"
    assert spec.data.train == folder / "data" / "train.jsonl"
    assert spec.data.eval == folder / "data" / "eval.jsonl"
    assert spec.base_model.path == folder / "model"
    assert spec.training.learning_rate == 0.0005
    assert spec.training.lora.target_modules == ["q_proj", "v_proj"]
    assert spec.evaluator_configs() == [("perplexity", {"data": "data/eval.jsonl"})]
    assert spec.source == spec_path
    assert spec.text == VALID_SPEC


def test_relative_spec_path_is_kept_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_experiment(tmp_path / "exp")
    monkeypatch.chdir(tmp_path)

    spec = load_spec("exp/spec.yaml")

    assert spec.source == Path("exp/spec.yaml")
    assert spec.data.train == (tmp_path / "exp" / "data" / "train.jsonl").resolve()


def test_loaded_spec_holds_plain_values_that_serialize(tmp_path: Path) -> None:
    spec = load_spec(_write_experiment(tmp_path / "exp"))

    config = spec.evaluators[0]["perplexity"]
    assert type(config) is dict  # not ruamel's CommentedMap
    dumped = json.loads(spec.model_dump_json())
    assert dumped["evaluators"] == [{"perplexity": {"data": "data/eval.jsonl"}}]
    assert dumped["tracking"]["tags"] == {"team": "nlp"}


def test_check_files_false_accepts_missing_files(tmp_path: Path) -> None:
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(
        "name: later\nbase_model: model\ndata: {train: data/t.jsonl, format: chat}\n"
        "evaluators:\n  - perplexity: {data: data/e.jsonl}\n"
    )

    with pytest.raises(SpecError, match="file not found"):
        load_spec(spec_path)
    spec = load_spec(spec_path, check_files=False)

    assert spec.data.train == (tmp_path / "data" / "t.jsonl").resolve()


def test_anchors_aliases_and_merge_keys_are_accepted(tmp_path: Path) -> None:
    text = (
        "name: demo\nbase_model: model\n"
        "data:\n  train: data/train.jsonl\n  eval: &held_out data/eval.jsonl\n  format: chat\n"
        "training:\n  <<: {batch_size: 2, epochs: 3}\n  epochs: 1\n"
        "evaluators:\n  - perplexity: {data: *held_out}\n"
    )
    spec = load_spec(_write_experiment(tmp_path / "exp", text))

    assert spec.training.batch_size == 2
    assert spec.training.epochs == 1  # keys written out win over merged ones
    assert spec.evaluator_configs() == [("perplexity", {"data": "data/eval.jsonl"})]


def test_missing_file_is_one_problem(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"

    with pytest.raises(SpecError) as info:
        load_spec(missing)

    assert str(info.value) == f"{missing}:1:1: (spec): file not found"
    assert info.value.source == str(missing)
    assert info.value.problems == [SpecProblem(None, None, "(spec)", "file not found")]


def test_folder_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="is a folder, not a spec file"):
        load_spec(tmp_path)


def test_alias_bomb_fails_fast(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")

    started = time.monotonic()
    with pytest.raises(SpecError, match="values once aliases are expanded"):
        load_spec(bomb)
    assert time.monotonic() - started < 10


def test_deep_nesting_is_a_spec_error(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("name: " + "[" * 500 + "]" * 500 + "\n")

    with pytest.raises(SpecError, match="nested too deeply"):
        load_spec(deep)


def test_bad_paths_are_problems_not_crashes(tmp_path: Path) -> None:
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(
        "name: demo\nbase_model: ~no-such-user-here/model\n"
        f"data:\n  train: {'x' * 5000}.jsonl\n  format: chat\n"
    )

    with pytest.raises(SpecError) as info:
        load_spec(spec_path)

    fields = [p.field for p in info.value.problems]
    assert fields == ["base_model", "data.train"]


def test_problems_are_in_file_order_and_dump_as_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(HERE)
    with pytest.raises(SpecError) as info:
        load_spec("broken_specs/several_problems.yaml")

    rows = dump_problems_json(info.value)
    assert [(r["line"], r["col"]) for r in rows] == sorted((r["line"], r["col"]) for r in rows)
    assert rows[0] == {
        "source": "broken_specs/several_problems.yaml",
        "line": 6,
        "col": 7,
        "field": "name",
        "message": rows[0]["message"],
    }
    json.dumps(rows)


def test_spec_error_is_a_user_error() -> None:
    assert issubclass(SpecError, EvalctlError)


def test_loading_does_not_import_heavy_libraries(tmp_path: Path) -> None:
    spec_path = _write_experiment(tmp_path / "exp")
    code = (
        "import sys\n"
        "from service.spec_loader import load_spec\n"
        f"load_spec({str(spec_path)!r})\n"
        "print(sorted(m for m in ('torch', 'transformers', 'mlflow') if m in sys.modules))\n"
    )

    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=HERE
    )

    assert out.stdout.strip() == "[]"
