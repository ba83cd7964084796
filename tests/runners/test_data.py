"""Training data: reading JSONL with file:line problems, tokenizing, the report, the collator."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from runners.data import (
    IGNORE_INDEX,
    CausalLMCollator,
    DataError,
    build_examples,
    check_data,
    read_jsonl,
    render_report,
)
from runners.data_report import length_stats
from service.prompting import PromptRenderer
from service.spec import DataSpec

GOOD = {
    "vertex": {"input_text": "Order 1 from Alice", "output_text": '{"name": "Alice"}'},
    "chat": {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Who ordered?"},
            {"role": "assistant", "content": "Alice."},
        ]
    },
    "alpaca": {"instruction": "Extract the name.", "input": "Order from Bob", "output": "Bob"},
    "completion": {"text": "The quick brown fox jumps over the lazy dog."},
}
TRAIN = "data/train.jsonl"


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work in tmp_path so messages name files as `data/train.jsonl`."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    return tmp_path


@pytest.fixture
def tok(tiny_model_dir: Path) -> Any:
    """The tiny tokenizer with its chat template (eos and end of turn: <|im_end|>)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture
def plain_tok(tok: Any) -> Any:
    """The tiny tokenizer without a chat template."""
    tok.chat_template = None
    return tok


def write(path: str | Path, lines: list[Any]) -> Path:
    """Write JSONL: dicts are dumped, str and bytes lines are written as they are."""
    out = b""
    for line in lines:
        if isinstance(line, dict):
            line = json.dumps(line)
        out += (line.encode() if isinstance(line, str) else line) + b"\n"
    Path(path).write_bytes(out)
    return Path(path)


def renderer_for(tokenizer: Any, fmt: str = "vertex", **fields: Any) -> PromptRenderer:
    spec = DataSpec.model_validate(
        {"train": TRAIN, "format": fmt, **fields}, context={"check_files": False}
    )
    return PromptRenderer(spec, tokenizer)


def tokenized(tokenizer: Any, lines: list[Any], fmt: str = "vertex", **kw: Any) -> Any:
    """Write, read and tokenize `lines` as data/train.jsonl."""
    rows = read_jsonl(write(TRAIN, lines), fmt, on_bad_rows=kw.pop("on_bad_rows", "fail"))
    renderer = renderer_for(tokenizer, fmt, **kw.pop("spec", {}))
    kw.setdefault("max_seq_len", 512)
    return build_examples(rows, renderer, tokenizer, **kw)


# --- reading ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", sorted(GOOD))
def test_every_format_is_read_with_line_numbers(in_tmp: Path, fmt: str) -> None:
    path = write(TRAIN, [GOOD[fmt], "", "   ", GOOD[fmt]])
    loaded = read_jsonl(path, fmt)
    assert [r.line for r in loaded.rows] == [1, 4]
    assert loaded.rows[0].data == GOOD[fmt]
    assert (loaded.rows_read, loaded.bad_rows, loaded.problems) == (2, 0, [])
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_alpaca_input_is_optional_and_may_be_null(in_tmp: Path) -> None:
    rows = [
        {"instruction": "Hi", "output": "Hello"},
        {"instruction": "Hi", "input": None, "output": "x"},
    ]
    assert len(read_jsonl(write(TRAIN, rows), "alpaca")) == 2


BAD_ROWS = [
    ("vertex", {"input_text": "x"}, "missing field 'output_text'"),
    (
        "vertex",
        {"input_text": "x", "output_text": 3},
        "field 'output_text' must be a string, got a number",
    ),
    (
        "vertex",
        {"input_text": None, "output_text": "y"},
        "field 'input_text' must be a string, got null",
    ),
    (
        "vertex",
        '{"input_text": "x" "output_text": "y"}',
        "not valid JSON (Expecting ',' delimiter at col 20)",
    ),
    ("vertex", "[1, 2]", "expected a JSON object, got a list"),
    ("vertex", '"just a string"', "expected a JSON object, got a string"),
    ("alpaca", {"instruction": "x"}, "missing field 'output'"),
    (
        "alpaca",
        {"instruction": "x", "input": ["a"], "output": "y"},
        "field 'input' must be a string, got a list",
    ),
    ("completion", {"txt": "x"}, "missing field 'text'"),
    ("completion", {"text": True}, "field 'text' must be a string, got a boolean"),
    ("chat", {"msgs": []}, "missing field 'messages'"),
    ("chat", {"messages": []}, "field 'messages' must be a non-empty list, got an empty list"),
    ("chat", {"messages": "hi"}, "field 'messages' must be a non-empty list, got a string"),
    ("chat", {"messages": ["hi"]}, "messages[0] must be an object, got a string"),
    ("chat", {"messages": [{"role": "user"}]}, "messages[0]: missing field 'content'"),
    (
        "chat",
        {"messages": [{"role": "bot", "content": "x"}]},
        "messages[0]: role 'bot' is not one of system, user, assistant",
    ),
    (
        "chat",
        {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": 1}]},
        "messages[1]: content must be a string, got a number",
    ),
    (
        "chat",
        {"messages": [{"role": "user", "content": "x"}]},
        "the last message must be the assistant's answer, got role 'user'",
    ),
]


@pytest.mark.parametrize(("fmt", "line", "message"), BAD_ROWS)
def test_each_malformation_is_reported_with_file_and_line(
    in_tmp: Path, fmt: str, line: Any, message: str
) -> None:
    path = write(TRAIN, [GOOD[fmt], "", line, GOOD[fmt]])
    with pytest.raises(DataError) as err:
        read_jsonl(path, fmt, on_bad_rows="fail")
    problem = f"{TRAIN}:3: {message}"
    assert str(err.value) == f"{problem} (on_bad_rows: skip to skip them)"
    assert err.value.problems == [problem]


def test_fail_collects_every_bad_row_into_one_error(in_tmp: Path) -> None:
    good, bad = GOOD["vertex"], {"input_text": "x"}
    path = write(TRAIN, [good, bad, good, "{", bad, "[]"])
    with pytest.raises(DataError) as err:
        read_jsonl(path, "vertex")
    assert str(err.value) == (
        f"{TRAIN}:2: missing field 'output_text' (and 3 more bad rows; "
        "on_bad_rows: skip to skip them)"
    )
    assert err.value.problems == [
        f"{TRAIN}:2: missing field 'output_text'",
        f"{TRAIN}:4: not valid JSON (Expecting property name enclosed in double quotes at col 2)",
        f"{TRAIN}:5: missing field 'output_text'",
        f"{TRAIN}:6: expected a JSON object, got a list",
    ]


def test_problem_list_stops_after_twenty(in_tmp: Path) -> None:
    path = write(TRAIN, [GOOD["vertex"]] + ["[]"] * 25)
    with pytest.raises(DataError) as err:
        read_jsonl(path, "vertex")
    assert len(err.value.problems) == 21
    assert err.value.problems[19] == f"{TRAIN}:21: expected a JSON object, got a list"
    assert err.value.problems[20] == "... and 5 more"
    assert "(and 24 more bad rows;" in str(err.value)


def test_skip_keeps_the_good_rows_and_reports_the_bad(in_tmp: Path) -> None:
    good = GOOD["vertex"]
    path = write(TRAIN, [good, {"input_text": "x"}, good, "nope", good])
    loaded = read_jsonl(path, "vertex", on_bad_rows="skip")
    assert [r.line for r in loaded.rows] == [1, 3, 5]
    assert (loaded.rows_read, loaded.bad_rows) == (5, 2)
    assert loaded.problems[0] == f"{TRAIN}:2: missing field 'output_text'"


def test_non_utf8_line_is_a_problem_not_a_traceback(in_tmp: Path) -> None:
    path = write(TRAIN, [GOOD["vertex"], b'{"input_text": "caf\xe9", "output_text": "x"}'])
    with pytest.raises(DataError) as err:
        read_jsonl(path, "vertex")
    assert err.value.problems == [f"{TRAIN}:2: not valid UTF-8 (byte 0xe9 at col 20)"]
    assert len(read_jsonl(path, "vertex", on_bad_rows="skip")) == 1


def test_utf8_bom_on_the_first_line_is_accepted(in_tmp: Path) -> None:
    path = write(TRAIN, [b"\xef\xbb\xbf" + json.dumps(GOOD["vertex"]).encode()])
    assert read_jsonl(path, "vertex").rows[0].data == GOOD["vertex"]


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_empty_file_has_no_usable_rows(in_tmp: Path, content: bytes) -> None:
    Path(TRAIN).write_bytes(content)
    with pytest.raises(
        DataError, match=r"^data/train\.jsonl: no usable rows \(the file has no rows\)$"
    ):
        read_jsonl(TRAIN, "vertex", on_bad_rows="skip")


def test_file_of_only_bad_rows_has_no_usable_rows(in_tmp: Path) -> None:
    path = write(TRAIN, ["[]", {"input_text": "x"}])
    with pytest.raises(DataError) as err:
        read_jsonl(path, "vertex", on_bad_rows="skip")
    assert str(err.value) == (
        f"{TRAIN}: no usable rows (2 bad rows skipped; first: "
        f"{TRAIN}:1: expected a JSON object, got a list)"
    )


def test_missing_file_is_a_data_error(in_tmp: Path) -> None:
    with pytest.raises(DataError, match=r"^data/nope\.jsonl: cannot read: "):
        read_jsonl("data/nope.jsonl", "vertex")


def test_progress_bar_is_optional_and_cleans_up(in_tmp: Path, tok: Any) -> None:
    from rich.console import Console
    from rich.progress import Progress

    bar = Progress(console=Console(file=io.StringIO(), force_terminal=False))
    path = write(TRAIN, [GOOD["vertex"]] * 3)
    with bar:
        rows = read_jsonl(path, "vertex", progress=bar)
        build_examples(rows, renderer_for(tok), tok, max_seq_len=512, progress=bar)
    assert len(rows) == 3 and bar.tasks == []


# --- tokenizing -----------------------------------------------------------------------


def labelled(example: dict[str, list[int]]) -> list[int]:
    return [
        t
        for t, label in zip(example["input_ids"], example["labels"], strict=True)
        if label != IGNORE_INDEX
    ]


@pytest.mark.parametrize("fmt", ["vertex", "chat", "alpaca"])
@pytest.mark.parametrize("chat_template", [True, False])
def test_labels_mask_exactly_the_prompt(
    in_tmp: Path, tok: Any, fmt: str, chat_template: bool
) -> None:
    if not chat_template:
        tok.chat_template = None
    data = tokenized(tok, [GOOD[fmt]], fmt)
    example, renderer = data.rows[0], renderer_for(tok, fmt)
    n_prompt = example["labels"].count(IGNORE_INDEX)
    assert example["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert tok.decode(example["input_ids"][:n_prompt]) == renderer.render(GOOD[fmt])
    assert tok.decode(labelled(example)) == renderer.target(GOOD[fmt]) + "<|im_end|>"
    assert example["attention_mask"] == [1] * len(example["input_ids"])
    assert data.lines == [1]


def test_chat_prompt_tokens_come_from_the_chat_template(in_tmp: Path, tok: Any) -> None:
    example = tokenized(tok, [GOOD["chat"]], "chat").rows[0]
    n_prompt = example["labels"].count(IGNORE_INDEX)
    expected = tok.apply_chat_template(
        GOOD["chat"]["messages"][:-1], tokenize=False, add_generation_prompt=True
    )
    assert tok.decode(example["input_ids"][:n_prompt]) == expected
    assert expected.endswith("<|im_start|>assistant\n")
    assert tok.decode(labelled(example)) == "Alice.<|im_end|>"


def test_completion_format_trains_on_the_whole_text(in_tmp: Path, tok: Any) -> None:
    example = tokenized(tok, [GOOD["completion"]], "completion").rows[0]
    assert example["labels"] == example["input_ids"]
    assert tok.decode(example["input_ids"]) == GOOD["completion"]["text"] + "<|im_end|>"


def test_plain_prompts_get_bos_and_chat_template_prompts_do_not_get_another(
    in_tmp: Path, tiny_model_dir: Path
) -> None:
    from transformers import AutoTokenizer

    bos_tok = AutoTokenizer.from_pretrained(tiny_model_dir, add_bos_token=True)
    bos = bos_tok.bos_token_id
    templated = tokenized(bos_tok, [GOOD["vertex"]]).rows[0]["input_ids"]
    assert templated[0] == bos and templated[1] != bos  # the template's own <|im_start|>
    bos_tok.chat_template = None
    plain = tokenized(bos_tok, [GOOD["vertex"]]).rows[0]
    n_prompt = plain["labels"].count(IGNORE_INDEX)
    assert plain["input_ids"][0] == bos and plain["input_ids"][1] != bos
    assert bos_tok.decode(plain["input_ids"][:n_prompt]) == "<|im_start|>Order 1 from Alice\n"
    assert bos_tok.decode(labelled(plain)) == '{"name": "Alice"}<|im_end|>'


def answers(n: int) -> list[dict[str, str]]:
    """Rows with the same prompt and answers of growing length."""
    return [{"input_text": "Order", "output_text": "ab " * (i + 1)} for i in range(n)]


def test_truncate_cuts_the_completion_tail(in_tmp: Path, plain_tok: Any) -> None:
    full = tokenized(plain_tok, answers(6))
    lengths = [len(r["input_ids"]) for r in full.rows]
    limit = sorted(lengths)[3]  # rows 5 and 6 are longer
    data = tokenized(plain_tok, answers(6), max_seq_len=limit, on_long_rows="truncate")
    assert (len(data.rows), data.truncated, data.dropped_long) == (6, 2, 0)
    assert all(len(r["input_ids"]) <= limit for r in data.rows)
    assert data.rows[5]["input_ids"] == full.rows[5]["input_ids"][:limit]
    assert data.rows[5]["labels"] == full.rows[5]["labels"][:limit]


def test_drop_leaves_long_rows_out(in_tmp: Path, plain_tok: Any) -> None:
    lengths = [len(r["input_ids"]) for r in tokenized(plain_tok, answers(6)).rows]
    limit = sorted(lengths)[3]
    data = tokenized(plain_tok, answers(6), max_seq_len=limit, on_long_rows="drop")
    assert (len(data.rows), data.truncated, data.dropped_long) == (4, 0, 2)
    assert data.lines == [1, 2, 3, 4]


def test_prompt_longer_than_max_seq_len_message(in_tmp: Path, tok: Any) -> None:
    rows = [GOOD["vertex"], {**GOOD["vertex"], "input_text": "Order 1 from Alice and Bob"}]
    renderer = renderer_for(tok)
    shortest = min(
        len(tok(renderer.render(r), add_special_tokens=False)["input_ids"]) for r in rows
    )
    with pytest.raises(DataError) as err:
        tokenized(tok, rows, max_seq_len=8)
    assert str(err.value) == (
        f"training.max_seq_len (8) is shorter than every prompt (shortest prompt: "
        f"{shortest} tokens) in {TRAIN}"
    )


def test_rows_whose_prompt_fills_max_seq_len_are_dropped_and_counted(
    in_tmp: Path, plain_tok: Any
) -> None:
    rows = [
        {"input_text": "hi", "output_text": "x"},
        {"input_text": "Order " * 30, "output_text": "x"},
    ]
    data = tokenized(plain_tok, rows, max_seq_len=16)
    assert (len(data.rows), data.prompt_too_long, data.lines) == (1, 1, [1])
    report = check_data(data)
    assert report.train.prompt_too_long == 1
    assert any("whose prompt alone fills training.max_seq_len (16)" in w for w in report.warnings)


def test_every_row_too_long_with_drop_says_so(in_tmp: Path, plain_tok: Any) -> None:
    with pytest.raises(DataError, match=r"^every row of data/train\.jsonl is longer than"):
        tokenized(plain_tok, answers(3)[1:], max_seq_len=5, on_long_rows="drop")


def test_template_error_names_the_row(in_tmp: Path, tok: Any) -> None:
    with pytest.raises(DataError) as err:
        tokenized(tok, [GOOD["vertex"]], spec={"prompt_template": "{inptu_text}"})
    assert str(err.value).startswith(
        f"{TRAIN}:1: data.prompt_template: unknown field 'inptu_text' in row"
    )


# --- the report -----------------------------------------------------------------------


def test_length_stats_use_nearest_rank() -> None:
    stats = length_stats(list(range(100, 0, -1)))
    assert stats is not None
    assert stats.model_dump() == {
        "min": 1,
        "p50": 50,
        "p90": 90,
        "p99": 99,
        "max": 100,
        "mean": 50.5,
    }
    assert length_stats([]) is None


def test_token_length_distribution_on_a_known_set(in_tmp: Path, plain_tok: Any) -> None:
    # each <pad> is one token, plus the EOS: row k has k + 1 tokens, no prompt tokens
    rows = [{"text": "<pad>" * k} for k in range(1, 11)]
    report = check_data(tokenized(plain_tok, rows, "completion", max_seq_len=9))
    train = report.train
    assert train.total_tokens is not None and train.prompt_tokens is not None
    assert train.total_tokens.model_dump() == {
        "min": 2,
        "p50": 6,
        "p90": 10,
        "p99": 11,
        "max": 11,
        "mean": 6.5,
    }
    assert train.prompt_tokens.max == 0
    assert (train.over_max_seq_len, train.truncated) == (2, 2)
    assert train.training_tokens == sum(range(2, 10)) + 9 + 9


def test_duplicates_empty_fields_and_overlap_with_line_numbers(in_tmp: Path, tok: Any) -> None:
    a, b = GOOD["vertex"], {"input_text": "Order 2 from Bob", "output_text": "{}"}
    train_rows = [
        a,
        b,
        {**a, "id": 7},
        {"input_text": " ", "output_text": "x"},
        {"input_text": "y", "output_text": ""},
        a,
    ]
    train = tokenized(tok, train_rows)
    write("data/eval.jsonl", [{"input_text": "new", "output_text": "n"}, b])
    renderer = renderer_for(tok)
    eval_set = build_examples(
        read_jsonl("data/eval.jsonl", "vertex", on_bad_rows="fail"), renderer, tok, max_seq_len=512
    )
    report = check_data(train, eval_set)
    assert (report.train.duplicates, report.train.duplicate_lines) == (2, [(3, 1), (6, 1)])
    assert report.train.empty_field_lines == [(4, "input"), (5, "completion")]
    assert (report.overlap, report.overlap_lines) == (1, [(2, 2)])
    assert report.warnings == [
        "train: 2 duplicate rows (line 3 = line 1, line 6 = line 1)",
        "train: 2 rows with an empty field (line 4: empty input, line 5: empty completion)",
        "eval: 1 row also in train (eval line 2 = train line 2)",
    ]
    assert report.eval is not None and report.eval.duplicates == 0


def test_report_counts_hashes_and_bad_rows(in_tmp: Path, tok: Any) -> None:
    data = tokenized(
        tok, [GOOD["vertex"], "oops", GOOD["vertex"] | {"input_text": "z"}], on_bad_rows="skip"
    )
    report = check_data(data)
    t = report.train
    assert (t.rows_read, t.kept, t.skipped_bad, t.dropped_long, t.truncated) == (3, 2, 1, 0, 0)
    assert report.hashes == {"train": hashlib.sha256(Path(TRAIN).read_bytes()).hexdigest()}
    assert t.training_tokens == sum(len(r["input_ids"]) for r in data.rows)
    assert report.warnings[0].startswith(
        f"train: skipped 1 bad row (first: {TRAIN}:2: not valid JSON"
    )


def test_render_report_shows_the_numbers_side_by_side(in_tmp: Path, tok: Any) -> None:
    from rich.console import Console

    data = tokenized(tok, [GOOD["vertex"], GOOD["vertex"], {**GOOD["vertex"], "input_text": "z"}])
    console = Console(record=True, width=120, file=io.StringIO())
    console.print(render_report(check_data(data, data)))
    lines = {
        cells[0]: cells[1:]
        for line in console.export_text().splitlines()
        if len(cells := [c.strip() for c in line.strip("│ ").split("│")]) > 1
    }
    assert lines["file"] == [TRAIN, TRAIN]
    assert lines["rows read"] == ["3", "3"]
    assert lines["duplicate rows"] == ["1", "1"]
    assert lines["eval rows also in train"] == ["", "3"]
    assert lines["sha256"] == [data.sha256[:12]] * 2


# --- the collator ---------------------------------------------------------------------


def test_collator_pads_right_and_masks_the_padding(tok: Any) -> None:
    features = [
        {"input_ids": [5, 6, 7], "labels": [IGNORE_INDEX, 6, 7], "attention_mask": [1, 1, 1]},
        {
            "input_ids": [8, 9, 10, 11, 12],
            "labels": [IGNORE_INDEX] * 2 + [10, 11, 12],
            "attention_mask": [1] * 5,
        },
    ]
    batch = CausalLMCollator(tok)(features)
    pad = tok.pad_token_id
    assert batch["input_ids"].tolist() == [[5, 6, 7, pad, pad], [8, 9, 10, 11, 12]]
    assert batch["labels"].tolist() == [[-100, 6, 7, -100, -100], [-100, -100, 10, 11, 12]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1] * 5]
    assert str(batch["input_ids"].dtype) == "torch.int64"


def test_collator_pads_to_a_multiple_and_falls_back_to_eos(tok: Any) -> None:
    tok.pad_token = None
    batch = CausalLMCollator(tok, pad_to_multiple_of=8)(
        [{"input_ids": [5, 6, 7], "labels": [5, 6, 7]}]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7] + [tok.eos_token_id] * 5]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0, 0, 0]]
    assert batch["labels"].tolist() == [[5, 6, 7] + [-100] * 5]
