"""The `classification` evaluator: does the model pick the right label for each input?

Owns reading the rows (JSONL: `input_text` or `prompt`, a `label` among the configured
labels, optional `id` and `cluster`), the two ways of getting the model's choice, and the
metrics. `generate`: the model writes an answer (through `evaluators.generation`) and the
label is the first one written as a whole word (case-insensitive; `_`, `-` and spaces inside
a label are interchangeable; at the same position the longest label wins, so "no_sarcasm"
is not read as "sarcasm"); no label found counts as wrong. `loglikelihood`: each label is
scored as a continuation of the prompt (`evaluators.loglikelihood`) and the likeliest wins.
Metrics: `accuracy`, `macro_f1`, `precision.<label>`, `recall.<label>`, `f1.<label>`,
`unparsed_rate` and the confusion counts `confusion.<gold>.<predicted>` (predicted
`unparsed` in generate mode); the confusion matrix is also written as a JSON artifact.
`score_labels` and `score_logprobs` are the pure scoring halves. It does not load the model
or record results.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from evaluators.base import EvalResult, Evaluator, EvaluatorInputError, ExampleScore, ModelHandle
from evaluators.jsonl import RowIds, json_type, prompt_text, read_jsonl
from service.spec import ExistingFile

UNPARSED = "unparsed"  # the predicted column of answers that name no label


@dataclass(frozen=True)
class LabelRow:
    """One input, its gold label, an optional cluster and where it came from."""

    example_id: str
    input_text: str
    label: str
    cluster: str | None = None
    line: int = 0


class ClassificationEvaluator(Evaluator):
    """Score label accuracy and per-label precision, recall and F1 of the model's answers."""

    name = "classification"

    class Config(Evaluator.Config):
        data: ExistingFile = Field(
            description="JSONL rows: input_text (or prompt), label (one of `labels`), "
            "optional id and optional cluster (kept in the details, e.g. for paired tests)."
        )
        labels: list[str] = Field(
            min_length=2, description='The label set, e.g. ["sarcasm", "no_sarcasm"].'
        )
        method: Literal["generate", "loglikelihood"] = Field(
            default="generate",
            description="generate: parse the first label in the model's answer; "
            "loglikelihood: pick the label the model finds likeliest after the prompt.",
        )
        max_new_tokens: int = Field(
            default=16, ge=1, description="Tokens generated at most (generate)."
        )
        batch_size: int = Field(default=16, ge=1, description="Sequences per forward pass.")
        raw_prompts: bool = Field(
            default=False,
            description="Feed input_text to the model as is, without the training prompt "
            "format (chat template, prompt_template).",
        )
        limit: int | None = Field(default=None, ge=1, description="Use only the first N rows.")

        @field_validator("labels")
        @classmethod
        def _distinct_labels(cls, labels: list[str]) -> list[str]:
            check_labels(labels)
            return labels

    config: Config

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self._rows: list[LabelRow] | None = None

    def prepare(self) -> None:
        """Read and check the rows.

        Raises:
            EvaluatorInputError: a row is malformed, its label is missing or not one of the
                labels, or it repeats an id (names file:line).
        """
        self._rows = read_rows(self.config.data, self.config.labels, limit=self.config.limit)

    def evaluate(self, handle: ModelHandle) -> EvalResult:
        """Get the model's label for each input and score it against the gold label."""
        from evaluators.generation import generate_for, needs_special_tokens
        from evaluators.loglikelihood import continuation_logprobs

        if self._rows is None:
            self.prepare()
        rows = self._rows or []
        labels = self.config.labels
        raw = self.config.raw_prompts
        prompts = [row.input_text if raw else handle.render_prompt(row.input_text) for row in rows]
        if self.config.method == "generate":
            outputs = generate_for(
                handle,
                prompts,
                max_new_tokens=self.config.max_new_tokens,
                batch_size=self.config.batch_size,
            )
            result = score_labels(outputs, rows, labels)
        else:
            flat = continuation_logprobs(
                handle.model,
                handle.tokenizer,
                [(prompt, label) for prompt in prompts for label in labels],
                batch_size=self.config.batch_size,
                add_special_tokens=needs_special_tokens(handle.tokenizer, prompts),
            )
            width = len(labels)
            logprobs = [
                dict(zip(labels, flat[i * width : (i + 1) * width], strict=True))
                for i in range(len(rows))
            ]
            result = score_logprobs(logprobs, rows, labels)
        path = write_confusion(result, labels, folder=_artifact_dir(handle))
        result.artifacts["confusion_matrix"] = str(path)
        return result


def check_labels(labels: list[str]) -> None:
    """Check that labels are non-empty and distinct, also as metric-name keys.

    Raises:
        ValueError: a label is blank, two labels differ only in case or punctuation, or a
            label's key is the reserved `unparsed`.
    """
    seen: dict[str, str] = {}
    for label in labels:
        if not label.strip():
            raise ValueError("labels must be non-empty strings")
        # Two labels clash if the parser cannot tell them apart or their metric keys match.
        key = re.sub(r"[\s_-]+", "_", label_key(label).lower())
        if key == UNPARSED:
            raise ValueError(f"'{label}' is reserved (answers naming no label are '{UNPARSED}')")
        if key in seen:
            raise ValueError(
                f"labels '{seen[key]}' and '{label}' are the same label to the parser and "
                "in metric names"
            )
        seen[key] = label


def label_key(label: str) -> str:
    """Return the label as used in metric names (runs of other characters become `_`)."""
    return re.sub(r"[^\w-]+", "_", label.strip())


def read_rows(path: Path, labels: list[str], *, limit: int | None = None) -> list[LabelRow]:
    """Return the rows of a classification JSONL file.

    Raises:
        EvaluatorInputError: a row is not a JSON object, lacks a non-empty input_text
            (or prompt), has no label or one outside `labels`, or repeats an id.
    """
    row_id = RowIds(path)
    rows = []
    for lineno, row in read_jsonl(path, limit=limit):
        text = prompt_text(path, lineno, row)
        if "label" not in row:
            raise EvaluatorInputError(f"{path}:{lineno}: row has no 'label' field")
        label = row["label"]
        if not isinstance(label, str):
            raise EvaluatorInputError(
                f"{path}:{lineno}: label must be a string, got {json_type(label)}"
            )
        if label not in labels:
            raise EvaluatorInputError(
                f"{path}:{lineno}: label '{label}' is not one of the labels: {', '.join(labels)}"
            )
        cluster = row.get("cluster")
        if cluster is not None and (
            isinstance(cluster, bool) or not isinstance(cluster, str | int)
        ):
            raise EvaluatorInputError(
                f"{path}:{lineno}: cluster must be a string or an integer, got {json_type(cluster)}"
            )
        rows.append(
            LabelRow(
                example_id=row_id(lineno, row),
                input_text=text,
                label=label,
                cluster=None if cluster is None else str(cluster),
                line=lineno,
            )
        )
    return rows


def parse_label(text: str, labels: list[str]) -> str | None:
    """Return the label the text names first (longest at a tie), or None when none is named.

    A label counts only as a whole word, in any case; `_`, `-` and spaces within a label
    match each other ("no sarcasm" names "no_sarcasm").
    """
    best: tuple[int, int, int] | None = None
    for index, label in enumerate(labels):
        match = _label_pattern(label).search(text)
        if match is not None:
            candidate = (match.start(), -(match.end() - match.start()), index)
            if best is None or candidate < best:
                best = candidate
    return None if best is None else labels[best[2]]


def _label_pattern(label: str) -> re.Pattern[str]:
    parts = [re.escape(part) for part in re.split(r"[\s_-]+", label.strip()) if part]
    return re.compile(r"(?<!\w)" + r"[\s_-]+".join(parts) + r"(?!\w)", re.IGNORECASE)


def score_labels(outputs: list[str], rows: list[LabelRow], labels: list[str]) -> EvalResult:
    """Score generated answers: parse each one's label and compare it with the gold label."""
    if len(outputs) != len(rows):
        raise ValueError(f"{len(outputs)} outputs for {len(rows)} rows")
    predicted = [parse_label(output, labels) for output in outputs]
    examples = []
    for row, output, pred in zip(rows, outputs, predicted, strict=True):
        details: dict[str, Any] = {"input": row.input_text, "output": output}
        examples.append(_example(row, pred, {}, details))
    metrics = label_metrics([row.label for row in rows], predicted, labels, unparsed_column=True)
    return EvalResult(metrics=metrics, examples=examples)


def score_logprobs(
    logprobs: list[dict[str, float]], rows: list[LabelRow], labels: list[str]
) -> EvalResult:
    """Score log-likelihood choices: the likeliest label wins (the first one at a tie).

    Each example also gets `margin`: the gold label's log-probability minus the best other
    label's (positive when the model is right).
    """
    if len(logprobs) != len(rows):
        raise ValueError(f"{len(logprobs)} log-probability sets for {len(rows)} rows")
    predicted: list[str | None] = []
    examples = []
    for row, scores in zip(rows, logprobs, strict=True):
        pred = max(labels, key=lambda label: scores[label])
        best_other = max(scores[label] for label in labels if label != row.label)
        predicted.append(pred)
        details = {"input": row.input_text, "logprobs": {k: scores[k] for k in labels}}
        examples.append(_example(row, pred, {"margin": scores[row.label] - best_other}, details))
    metrics = label_metrics([row.label for row in rows], predicted, labels, unparsed_column=False)
    return EvalResult(metrics=metrics, examples=examples)


def _example(
    row: LabelRow, pred: str | None, scores: dict[str, float], details: dict[str, Any]
) -> ExampleScore:
    details.update(gold=row.label, predicted=pred)
    if row.cluster is not None:
        details["cluster"] = row.cluster
    return ExampleScore(
        example_id=row.example_id,
        scores={"correct": float(pred == row.label), **scores},
        details=details,
    )


def label_metrics(
    gold: list[str], predicted: list[str | None], labels: list[str], *, unparsed_column: bool
) -> dict[str, float]:
    """Return accuracy, macro F1, per-label precision/recall/F1, unparsed rate, confusion.

    Precision, recall and F1 of a label with no predictions (or no gold rows) are 0, as
    scikit-learn's `zero_division=0`; macro F1 averages over all `labels`.
    """
    total = len(gold)
    metrics: dict[str, float] = {
        "accuracy": _ratio(sum(p == g for g, p in zip(gold, predicted, strict=True)), total),
        "unparsed_rate": _ratio(sum(p is None for p in predicted), total),
    }
    f1s = []
    for label in labels:
        tp = sum(g == label and p == label for g, p in zip(gold, predicted, strict=True))
        fp = sum(g != label and p == label for g, p in zip(gold, predicted, strict=True))
        fn = sum(g == label and p != label for g, p in zip(gold, predicted, strict=True))
        key = label_key(label)
        metrics[f"precision.{key}"] = _ratio(tp, tp + fp)
        metrics[f"recall.{key}"] = _ratio(tp, tp + fn)
        metrics[f"f1.{key}"] = _ratio(2 * tp, 2 * tp + fp + fn)
        f1s.append(metrics[f"f1.{key}"])
    metrics["macro_f1"] = sum(f1s) / len(f1s)
    columns = confusion_columns(labels, unparsed_column=unparsed_column)
    matrix = confusion_matrix(gold, predicted, labels, unparsed_column=unparsed_column)
    for label, counts in zip(labels, matrix, strict=True):
        for column, count in zip(columns, counts, strict=True):
            metrics[f"confusion.{label_key(label)}.{column}"] = float(count)
    return metrics


def confusion_columns(labels: list[str], *, unparsed_column: bool) -> list[str]:
    """Return the predicted-label column keys of the confusion matrix."""
    return [label_key(label) for label in labels] + ([UNPARSED] if unparsed_column else [])


def confusion_matrix(
    gold: list[str], predicted: list[str | None], labels: list[str], *, unparsed_column: bool
) -> list[list[int]]:
    """Return counts[gold label][predicted label] (plus an unparsed column when asked)."""
    width = len(labels) + (1 if unparsed_column else 0)
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * width for _ in labels]
    for g, p in zip(gold, predicted, strict=True):
        matrix[index[g]][len(labels) if p is None else index[p]] += 1
    return matrix


def write_confusion(result: EvalResult, labels: list[str], *, folder: Path) -> Path:
    """Write the confusion matrix in `result.metrics` as JSON under `folder`; return its path.

    The file holds `labels` (rows: gold), `predicted` (columns) and `matrix` (counts).
    """
    keys = [label_key(label) for label in labels]
    has_unparsed = f"confusion.{keys[0]}.{UNPARSED}" in result.metrics
    columns = labels + ([UNPARSED] if has_unparsed else [])
    column_keys = keys + ([UNPARSED] if has_unparsed else [])
    matrix = [[int(result.metrics[f"confusion.{g}.{p}"]) for p in column_keys] for g in keys]
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=folder, prefix="confusion-", suffix=".json", delete=False, encoding="utf-8"
    ) as handle:
        json.dump({"labels": labels, "predicted": columns, "matrix": matrix}, handle, indent=2)
    return Path(handle.name)


def _artifact_dir(handle: ModelHandle) -> Path:
    if handle.cache_dir is not None:
        return Path(handle.cache_dir) / "artifacts" / "classification"
    return Path(tempfile.mkdtemp(prefix="evalctl-classification-"))


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0
