"""The `json_schema` evaluator: does the model answer with JSON that fits a schema?

Owns reading the prompts (JSONL: `input_text` or `prompt`, optional `reference` and `id`)
and the JSON Schema, generating greedily (through `evaluators.generation`), pulling the
first JSON value out of each output, validating it (the schema's `$schema` dialect,
Draft 2020-12 by default, with `format` checked), and comparing it with the reference.
Metrics: `parse_rate`, `valid_rate`, and with references `field_exact_match` and
`exact_match`. `score_outputs` is the pure scoring half, usable without a model. It does not
load the model or record results.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field

from evaluators.base import EvalResult, Evaluator, EvaluatorInputError, ExampleScore, ModelHandle
from evaluators.jsonl import RowIds, json_type, prompt_text, read_jsonl
from service.spec import ExistingFile

ERROR_CHARS = 200
NO_JSON: Any = object()  # extract_json found no JSON value


@dataclass(frozen=True)
class PromptRow:
    """One prompt, its optional reference answer and where it came from."""

    example_id: str
    input_text: str
    reference: Any = None
    line: int = 0

    @property
    def has_reference(self) -> bool:
        """Return whether the row carries a reference answer."""
        return self.reference is not None


class JsonSchemaEvaluator(Evaluator):
    """Score how often the model's answer parses as JSON and satisfies a JSON Schema."""

    name = "json_schema"

    class Config(Evaluator.Config):
        # The spec key is `schema`; the attribute is `schema_` (BaseModel.schema exists).
        model_config = ConfigDict(validate_by_name=True, serialize_by_alias=True)

        prompts: ExistingFile = Field(
            description="JSONL prompts: input_text (or prompt), optional reference "
            "(the expected JSON value) and optional id."
        )
        schema_: ExistingFile = Field(
            alias="schema", description="JSON Schema file the answers must satisfy."
        )
        max_new_tokens: int = Field(default=128, ge=1, description="Tokens generated at most.")
        batch_size: int = Field(default=16, ge=1, description="Prompts generated together.")
        raw_prompts: bool = Field(
            default=False,
            description="Feed input_text to the model as is, without the training prompt "
            "format (chat template, prompt_template).",
        )
        limit: int | None = Field(default=None, ge=1, description="Use only the first N rows.")

    config: Config

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self._rows: list[PromptRow] | None = None
        self._validator: Any = None

    def prepare(self) -> None:
        """Read the prompts and check that the schema is a valid JSON Schema.

        Raises:
            EvaluatorInputError: a prompt row is malformed (file:line), the schema file is
                not JSON (line and column) or not a valid schema.
        """
        self._validator = load_validator(self.config.schema_)
        self._rows = read_prompts(self.config.prompts, limit=self.config.limit)

    def evaluate(self, handle: ModelHandle) -> EvalResult:
        """Generate an answer per prompt and score parse rate, validity and matches."""
        from evaluators.generation import generate_for

        if self._rows is None or self._validator is None:
            self.prepare()
        rows = self._rows or []
        raw = self.config.raw_prompts
        prompts = [row.input_text if raw else handle.render_prompt(row.input_text) for row in rows]
        outputs = generate_for(
            handle,
            prompts,
            max_new_tokens=self.config.max_new_tokens,
            batch_size=self.config.batch_size,
        )
        return score_outputs(outputs, rows, self._validator)


def load_validator(path: Path) -> Any:
    """Return a validator for the JSON Schema in `path` (its `$schema`, else 2020-12).

    Raises:
        EvaluatorInputError: the file is unreadable, not JSON, or not a valid schema.
    """
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EvaluatorInputError(f"{path}: cannot read the schema: {exc}") from None
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EvaluatorInputError(
            f"{path}: invalid JSON at line {exc.lineno} col {exc.colno}: {exc.msg}"
        ) from None
    if not isinstance(schema, dict):
        raise EvaluatorInputError(
            f"{path}: a JSON Schema must be an object, got {json_type(schema)}"
        )
    cls = validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        where = _json_path(exc.absolute_path)
        raise EvaluatorInputError(
            f"{path}: not a valid JSON Schema: at {where}: {_short(exc.message)}"
        ) from None
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def read_prompts(path: Path, *, limit: int | None = None) -> list[PromptRow]:
    """Return the prompt rows of a JSONL file.

    Raises:
        EvaluatorInputError: a row is not a JSON object, lacks a string input_text
            (or prompt), has a reference that is not an object or array, or repeats an id.
    """
    row_id = RowIds(path)
    rows = []
    for lineno, row in read_jsonl(path, limit=limit):
        text = prompt_text(path, lineno, row)
        reference = row.get("reference")
        if reference is not None and not isinstance(reference, dict | list):
            raise EvaluatorInputError(
                f"{path}:{lineno}: reference must be a JSON object or array (the expected "
                f"answer itself), got {json_type(reference)}"
            )
        rows.append(
            PromptRow(
                example_id=row_id(lineno, row),
                input_text=text,
                reference=reference,
                line=lineno,
            )
        )
    return rows


def score_outputs(outputs: list[str], rows: list[PromptRow], validator: Any) -> EvalResult:
    """Score model outputs against the schema and references (no model involved).

    Args:
        outputs: the model's text for each row, in row order.
        rows: the prompt rows (ids, inputs, optional references).
        validator: a jsonschema validator instance (see `load_validator`).

    Returns:
        parse_rate and valid_rate over all rows; field_exact_match and exact_match over
        the rows that have a reference (absent when none has).
    """
    from jsonschema.exceptions import best_match

    if len(outputs) != len(rows):
        raise ValueError(f"{len(outputs)} outputs for {len(rows)} rows")
    examples = []
    for output, row in zip(outputs, rows, strict=True):
        value = extract_json(output)
        parsed = value is not NO_JSON
        error = None
        if not parsed:
            error = "no JSON value in the output"
        else:
            found = best_match(validator.iter_errors(value))
            if found is not None:
                error = _short(f"at {_json_path(found.absolute_path)}: {found.message}")
        scores = {"parsed": float(parsed), "valid": float(parsed and error is None)}
        if row.has_reference:
            scores["field_exact_match"] = field_match(value, row.reference) if parsed else 0.0
            scores["exact_match"] = float(parsed and json_equal(value, row.reference))
        details = {"input": row.input_text, "output": output, "reference": row.reference}
        if error is not None:
            details["error"] = error
        examples.append(ExampleScore(example_id=row.example_id, scores=scores, details=details))
    return EvalResult(metrics=_aggregate(examples), examples=examples)


def extract_json(text: str) -> Any:
    """Return the first JSON object or array in `text`, or `NO_JSON` when there is none.

    Prose and markdown fences before it are skipped: each `{` or `[` is tried in order as
    the start of a JSON value, and anything after the first value is ignored.
    """
    decoder = json.JSONDecoder()
    end = len(text.rstrip())
    for start, char in enumerate(text):
        if char not in "{[":
            continue
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError as exc:
            if exc.pos >= end or exc.msg.startswith("Unterminated string"):
                # The value runs to the end of the output (cut off by max_new_tokens): an
                # object nested inside it is not the answer, so stop looking.
                return NO_JSON
            continue
        return value
    return NO_JSON


def field_match(value: Any, reference: Any) -> float:
    """Return the fraction of the reference's top-level fields that `value` matches exactly.

    A reference that is not an object (or has no fields) scores as exact match.
    """
    if not isinstance(reference, dict) or not reference:
        return float(json_equal(value, reference))
    if not isinstance(value, dict):
        return 0.0
    hits = sum(1 for key, ref in reference.items() if key in value and json_equal(value[key], ref))
    return hits / len(reference)


def json_equal(a: Any, b: Any) -> bool:
    """Return whether two JSON values are equal as JSON (true is not 1; 1 equals 1.0)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


def _aggregate(examples: list[ExampleScore]) -> dict[str, float]:
    def mean(key: str) -> float:
        values = [e.scores[key] for e in examples if key in e.scores]
        return sum(values) / len(values) if values else 0.0

    metrics = {"parse_rate": mean("parsed"), "valid_rate": mean("valid")}
    if any("exact_match" in e.scores for e in examples):
        metrics["field_exact_match"] = mean("field_exact_match")
        metrics["exact_match"] = mean("exact_match")
    return metrics


def _json_path(parts: Any) -> str:
    path = "$"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _short(message: str) -> str:
    message = " ".join(message.split())
    return message if len(message) <= ERROR_CHARS else message[: ERROR_CHARS - 1] + "…"
