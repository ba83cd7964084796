"""Reading the JSONL inputs of built-in evaluators, with `file:line:` messages.

Owns turning a JSONL file into (line number, object) pairs and the row id rule shared by
evaluators (the row's `id`, else its line number; ids must be unique so the gate can pair
examples). It does not know any evaluator's fields.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from evaluators.base import EvaluatorInputError


def read_jsonl(path: Path, *, limit: int | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, row) for each non-blank line, at most `limit` rows.

    Raises:
        EvaluatorInputError: the file is unreadable, a line is not JSON or not an object,
            or the file holds no rows.
    """
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise EvaluatorInputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    count = 0
    with handle:
        try:
            for lineno, line in enumerate(handle, start=1):
                if limit is not None and count >= limit:
                    break
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise EvaluatorInputError(
                        f"{path}:{lineno}: invalid JSON at col {exc.colno}: {exc.msg}"
                    ) from None
                if not isinstance(row, dict):
                    raise EvaluatorInputError(
                        f"{path}:{lineno}: expected a JSON object, got {json_type(row)}"
                    )
                count += 1
                yield lineno, row
        except UnicodeDecodeError as exc:
            raise EvaluatorInputError(f"{path}: not UTF-8 text ({exc.reason})") from None
    if count == 0:
        raise EvaluatorInputError(f"{path}: no rows (the file is empty)")


class RowIds:
    """Assign each row its example id and reject duplicates."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: dict[str, int] = {}

    def __call__(self, lineno: int, row: dict[str, Any]) -> str:
        """Return the row's id (its `id` field, else its line number)."""
        raw = row.get("id")
        if raw is None:
            example_id = str(lineno)
        elif isinstance(raw, str | int) and not isinstance(raw, bool):
            example_id = str(raw)
        else:
            raise EvaluatorInputError(
                f"{self.path}:{lineno}: id must be a string or an integer, got {json_type(raw)}"
            )
        if example_id in self.seen:
            raise EvaluatorInputError(
                f"{self.path}:{lineno}: duplicate id '{example_id}' "
                f"(first at line {self.seen[example_id]})"
            )
        self.seen[example_id] = lineno
        return example_id


def json_type(value: Any) -> str:
    """Return the JSON name of a Python value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def prompt_text(path: Path, lineno: int, row: dict[str, Any]) -> str:
    """Return the row's prompt: its `input_text`, else its `prompt` (a non-empty string).

    Raises:
        EvaluatorInputError: the row has neither field, or it is not a non-empty string.
    """
    key = "input_text" if "input_text" in row else "prompt" if "prompt" in row else None
    if key is None:
        fields = ", ".join(sorted(row)) or "none"
        raise EvaluatorInputError(
            f"{path}:{lineno}: row has no 'input_text' (or 'prompt') field; fields here: {fields}"
        )
    value = row[key]
    if not isinstance(value, str) or not value.strip():
        raise EvaluatorInputError(f"{path}:{lineno}: '{key}' must be a non-empty string")
    return value
