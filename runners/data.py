"""Training data: read JSONL rows, check their shape, tokenize them, and batch them.

Owns the row shapes of each data format, the `file:line` problems a user sees for
malformed rows (`data.on_bad_rows`), tokenization into prompt-masked causal-LM examples
capped at `training.max_seq_len` (`data.on_long_rows`), and the padding collator handed to
the transformers Trainer. How a row becomes prompt text is `service.prompting`'s job; the
data report (lengths, duplicates, overlap, hashes) is `runners.data_report`, re-exported
here. Training itself is `runners.train`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from service.errors import EvalctlError

if TYPE_CHECKING:
    from rich.progress import Progress

    from service.prompting import PromptRenderer

log = logging.getLogger(__name__)

DataFormat = Literal["vertex", "chat", "alpaca", "completion"]
IGNORE_INDEX = -100
MAX_PROBLEMS = 20
# (field, required) per format; chat rows are checked by _check_messages.
_FIELDS: dict[str, tuple[tuple[str, bool], ...]] = {
    "vertex": (("input_text", True), ("output_text", True)),
    "alpaca": (("instruction", True), ("input", False), ("output", True)),
    "completion": (("text", True),),
}
_ROLES = ("system", "user", "assistant")
_CHUNK = 512


class DataError(EvalctlError):
    """Training data the user must fix; `problems` lists each bad row as `file:line: why`."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


@dataclass(frozen=True)
class Row:
    """One well-formed row and the line it came from (1-based)."""

    line: int
    data: dict[str, Any]


@dataclass
class LoadedRows:
    """The well-formed rows of one JSONL file and what was wrong with the others."""

    path: Path
    format: str
    rows: list[Row]
    rows_read: int  # non-blank lines
    bad_rows: int
    problems: list[str]  # the first MAX_PROBLEMS, then "... and N more"
    sha256: str

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows)


@dataclass(frozen=True)
class RowInfo:
    """What the data report needs to know about one tokenized row."""

    line: int
    prompt_tokens: int
    total_tokens: int  # before truncation
    key: bytes  # digest of prompt + completion text: finds duplicates and overlap
    empty: str | None  # "input", "completion", "input and completion" or None
    kept: bool


@dataclass
class TokenizedSet:
    """Tokenized examples of one file (`rows`, Trainer-ready) plus the counts behind them."""

    path: Path
    sha256: str
    format: str
    max_seq_len: int
    rows_read: int
    bad_rows: int
    problems: list[str]
    rows: list[dict[str, list[int]]] = field(default_factory=list)  # input_ids/labels/mask
    lines: list[int] = field(default_factory=list)  # source line of each of `rows`
    info: list[RowInfo] = field(default_factory=list)  # every well-formed row
    truncated: int = 0
    dropped_long: int = 0
    prompt_too_long: int = 0
    no_target: int = 0

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.rows[index]

    @property
    def display_path(self) -> str:
        """Return the file's path as messages show it (relative to the cwd when inside it)."""
        return display_path(self.path)


def display_path(path: Path) -> str:
    """Return `path` relative to the working directory when it lies inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def read_jsonl(
    path: str | Path,
    fmt: DataFormat,
    *,
    on_bad_rows: Literal["fail", "skip"] = "fail",
    progress: bool | Progress | None = False,
) -> LoadedRows:
    """Read a JSONL file of `fmt` rows, reporting every malformed row as `file:line: why`.

    Blank lines are ignored; each kept row remembers its line number. `progress` False or
    None is silent, True shows a transient bar, a rich `Progress` gets a task added.

    Raises:
        DataError: with on_bad_rows=fail, any malformed row (all of them are listed in
            `.problems`); in any mode, a file with no usable rows.
    """
    path = Path(path)
    where = display_path(path)
    digest, rows, problems, bad, read = hashlib.sha256(), list[Row](), list[str](), 0, 0
    try:
        size = path.stat().st_size
        handle = path.open("rb")
    except OSError as err:
        raise DataError(f"{where}: cannot read: {err.strerror or err}")
    with handle, _task(progress, f"reading {where}", size) as advance:
        for number, raw in enumerate(handle, start=1):
            digest.update(raw)
            advance(len(raw))
            value, problem = _parse_line(raw, fmt, first=number == 1)
            if value is None and problem is None:
                continue
            read += 1
            if problem is not None:
                bad += 1
                if len(problems) < MAX_PROBLEMS:
                    problems.append(f"{where}:{number}: {problem}")
                continue
            assert value is not None
            rows.append(Row(number, value))
    listed = problems + ([f"... and {bad - len(problems)} more"] if bad > len(problems) else [])
    if bad and on_bad_rows == "fail":
        more = f"and {bad - 1} more bad row{'s' if bad > 2 else ''}; " if bad > 1 else ""
        raise DataError(f"{problems[0]} ({more}on_bad_rows: skip to skip them)", listed)
    if bad:
        log.warning("%s: skipped %d bad rows (first: %s)", where, bad, problems[0])
    if not rows:
        why = f"{bad} bad rows skipped; first: {problems[0]}" if bad else "the file has no rows"
        raise DataError(f"{where}: no usable rows ({why})", listed or None)
    return LoadedRows(path, fmt, rows, read, bad, listed, digest.hexdigest())


def _parse_line(raw: bytes, fmt: str, *, first: bool) -> tuple[dict[str, Any] | None, str | None]:
    """Return (row, None), (None, problem), or (None, None) for a blank line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return None, f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at col {err.start + 1})"
    text = text.rstrip("\r\n")  # so JSON error columns count within the line
    if first:
        text = text.removeprefix("\ufeff")  # a BOM written by some editors
    if not text.strip():
        return None, None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        return None, f"not valid JSON ({err.msg} at col {err.colno})"
    if not isinstance(value, dict):
        return None, f"expected a JSON object, got {_kind(value)}"
    problem = _check_messages(value) if fmt == "chat" else _check_fields(value, fmt)
    return (None, problem) if problem else (value, None)


def _kind(value: Any) -> str:
    """Return the JSON name of a value's type, with an article ("a list", "null")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def _check_fields(value: dict[str, Any], fmt: str) -> str | None:
    for name, required in _FIELDS[fmt]:
        if name not in value or (not required and value[name] is None):
            if required:
                return f"missing field '{name}'"
            continue
        if not isinstance(value[name], str):
            return f"field '{name}' must be a string, got {_kind(value[name])}"
    return None


def _check_messages(value: dict[str, Any]) -> str | None:
    if "messages" not in value:
        return "missing field 'messages'"
    messages = value["messages"]
    if not isinstance(messages, list) or not messages:
        got = "an empty list" if messages == [] else _kind(messages)
        return f"field 'messages' must be a non-empty list, got {got}"
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"messages[{i}] must be an object, got {_kind(message)}"
        for key in ("role", "content"):
            if key not in message:
                return f"messages[{i}]: missing field '{key}'"
        role = message["role"]
        if role not in _ROLES:
            shown = f"'{role}'" if isinstance(role, str) else _kind(role)
            return f"messages[{i}]: role {shown} is not one of {', '.join(_ROLES)}"
        if not isinstance(message["content"], str):
            return f"messages[{i}]: content must be a string, got {_kind(message['content'])}"
    if messages[-1]["role"] != "assistant":
        return f"the last message must be the assistant's answer, got role '{messages[-1]['role']}'"
    return None


def build_examples(
    rows: LoadedRows,
    renderer: PromptRenderer,
    tokenizer: Any,
    *,
    max_seq_len: int,
    on_long_rows: Literal["truncate", "drop"] = "truncate",
    progress: bool | Progress | None = False,
) -> TokenizedSet:
    """Tokenize rows into causal-LM examples whose labels mask the prompt tokens.

    Raises:
        DataError: a row the prompt template cannot fill, or no row fits max_seq_len.
    """
    out = TokenizedSet(
        path=rows.path,
        sha256=rows.sha256,
        format=rows.format,
        max_seq_len=max_seq_len,
        rows_read=rows.rows_read,
        bad_rows=rows.bad_rows,
        problems=rows.problems,
    )
    # Chat-template prompts carry their own special tokens; plain ones get the tokenizer's
    # own prefix (BOS) exactly as `tokenizer(prompt)` would add it.
    prefix = [] if renderer.uses_chat_template else _special_prefix(tokenizer)
    with _task(progress, f"tokenizing {out.display_path}", len(rows.rows)) as advance:
        for start in range(0, len(rows.rows), _CHUNK):
            chunk = rows.rows[start : start + _CHUNK]
            texts = [_texts(renderer, row, out.display_path) for row in chunk]
            prompts = _encode(tokenizer, [t[0] for t in texts])
            completions = _encode(tokenizer, [t[1] for t in texts])
            for row, (prompt, completion, empty), p_ids, c_ids in zip(
                chunk, texts, prompts, completions, strict=True
            ):
                key = hashlib.blake2b(f"{prompt}\0{completion}".encode(), digest_size=16)
                _add(out, row.line, prefix + p_ids, c_ids, on_long_rows, key.digest(), empty)
            advance(len(chunk))
    if not out.rows:
        raise DataError(_unusable_message(out))
    return out


def _texts(renderer: PromptRenderer, row: Row, where: str) -> tuple[str, str, str | None]:
    """Return (prompt, completion, which fields are empty) for a row."""
    try:
        prompt, completion = renderer.render(row.data), renderer.completion(row.data)
    except EvalctlError as err:
        raise DataError(f"{where}:{row.line}: {err}")
    no_input = renderer.format != "completion" and not renderer.prompt_input(row.data).strip()
    no_target = not renderer.target(row.data).strip()
    empty = " and ".join(n for n, e in (("input", no_input), ("completion", no_target)) if e)
    return prompt, completion, empty or None


def _encode(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    if not any(texts):
        return [[] for _ in texts]
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def _special_prefix(tokenizer: Any) -> list[int]:
    """Return the special tokens the tokenizer puts before a text (e.g. [BOS]), if any."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for i in range(len(full) - len(plain) + 1):
        if full[i : i + len(plain)] == plain:
            return list(full[:i])
    return []


def _add(
    out: TokenizedSet,
    line: int,
    prompt: list[int],
    completion: list[int],
    on_long_rows: str,
    key: bytes,
    empty: str | None,
) -> None:
    """Append one row's example to `out` (or count why it was left out)."""
    total, limit = len(prompt) + len(completion), out.max_seq_len
    kept = False
    if len(prompt) >= limit:
        out.prompt_too_long += 1
    elif not completion:
        out.no_target += 1
    elif total > limit and on_long_rows == "drop":
        out.dropped_long += 1
    else:
        if total > limit:
            completion = completion[: limit - len(prompt)]
            out.truncated += 1
        ids = prompt + completion
        # completion rows are trained on all of their text; the others on the answer only
        labels = list(ids) if out.format == "completion" else [IGNORE_INDEX] * len(prompt)
        if out.format != "completion":
            labels += completion
        out.rows.append({"input_ids": ids, "labels": labels, "attention_mask": [1] * len(ids)})
        out.lines.append(line)
        kept = True
    out.info.append(RowInfo(line, len(prompt), total, key, empty, kept))


def _unusable_message(out: TokenizedSet) -> str:
    where, limit, n = out.display_path, out.max_seq_len, len(out.info)
    if out.prompt_too_long == n:
        shortest = min(i.prompt_tokens for i in out.info)
        return (
            f"training.max_seq_len ({limit}) is shorter than every prompt "
            f"(shortest prompt: {shortest} tokens) in {where}"
        )
    if out.dropped_long + out.prompt_too_long == n:
        shortest = min(i.total_tokens for i in out.info)
        return (
            f"every row of {where} is longer than training.max_seq_len ({limit}) "
            f"(shortest: {shortest} tokens); raise it or set data.on_long_rows: truncate"
        )
    return (
        f"{where}: no usable rows ({out.prompt_too_long} prompts fill max_seq_len, "
        f"{out.dropped_long} rows too long, {out.no_target} with nothing to learn)"
    )


@contextmanager
def _task(
    progress: bool | Progress | None, description: str, total: float
) -> Iterator[Callable[[int], None]]:
    """Yield an `advance(n)` callable that drives a rich progress task, or does nothing."""
    if not progress:
        yield lambda n: None
        return
    from rich.progress import Progress

    bar = Progress(transient=True) if progress is True else progress
    assert isinstance(bar, Progress)
    owned = progress is True
    if owned:
        bar.start()
    task = bar.add_task(description, total=total)
    try:
        yield lambda n: bar.advance(task, n)
    finally:
        bar.remove_task(task)
        if owned:
            bar.stop()


@dataclass
class CausalLMCollator:
    """Pad a batch on the right: input_ids with the pad id, labels with -100, mask with 0."""

    tokenizer: Any
    pad_to_multiple_of: int | None = None

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Return a batch of torch tensors: input_ids, labels, attention_mask."""
        import torch

        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0
        width = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            width = math.ceil(width / self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch: dict[str, list[list[int]]] = {"input_ids": [], "labels": [], "attention_mask": []}
        for f in features:
            ids = list(f["input_ids"])
            labels = list(f["labels"]) if "labels" in f else list(ids)
            mask = list(f["attention_mask"]) if "attention_mask" in f else [1] * len(ids)
            pad = width - len(ids)
            batch["input_ids"].append(ids + [pad_id] * pad)
            batch["labels"].append(labels + [IGNORE_INDEX] * pad)
            batch["attention_mask"].append(mask + [0] * pad)
        return {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}


# The report lives in its own module (it is long); it is part of this module's API.
from runners.data_report import DataReport, check_data, render_report  # noqa: E402

__all__ = [
    "CausalLMCollator",
    "DataError",
    "DataReport",
    "LoadedRows",
    "Row",
    "TokenizedSet",
    "build_examples",
    "check_data",
    "read_jsonl",
    "render_report",
]
