"""The `text_metrics` evaluator: how close is the model's text to a reference text?

Owns reading the rows (JSONL: `input_text` or `prompt`, a string `reference`, optional
`id`), generating greedily (through `evaluators.generation`), and scoring the outputs with
the Hugging Face `evaluate` modules shipped in `evaluators.metrics` (offline): `rouge1`,
`rouge2` and `rougeL` (F-measure, 0-1), `bleu` (sacrebleu corpus BLEU, 0-100), `chrf`
(sacrebleu corpus chrF, 0-100) and `exact_match` (0-1). Per-example scores: the three ROUGE
scores, sentence chrF and exact match. BLEU is corpus-level only: sentence BLEU is too noisy
to pair examples on, so no example carries a `bleu` score. Outputs are compared with
surrounding whitespace removed. `score_texts` is the pure scoring half, usable without a
model. It does not load the model or record results.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from evaluators.base import EvalResult, Evaluator, EvaluatorInputError, ExampleScore, ModelHandle
from evaluators.jsonl import RowIds, json_type, prompt_text, read_jsonl
from service.spec import ExistingFile

MetricName = Literal["rouge", "bleu", "chrf", "exact_match"]
ALL_METRICS: tuple[MetricName, ...] = ("rouge", "bleu", "chrf", "exact_match")
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


@dataclass(frozen=True)
class TextRow:
    """One prompt, its reference text and where it came from."""

    example_id: str
    input_text: str
    reference: str
    line: int = 0


class TextMetricsEvaluator(Evaluator):
    """Score generated text against references with ROUGE, BLEU, chrF and exact match."""

    name = "text_metrics"

    class Config(Evaluator.Config):
        data: ExistingFile = Field(
            description="JSONL rows: input_text (or prompt), reference (the expected text) "
            "and optional id."
        )
        metrics: list[MetricName] = Field(
            default_factory=lambda: list(ALL_METRICS),
            min_length=1,
            description="Metric families to compute: rouge (rouge1, rouge2, rougeL), bleu, "
            "chrf, exact_match. Default: all.",
        )
        max_new_tokens: int = Field(default=128, ge=1, description="Tokens generated at most.")
        batch_size: int = Field(default=16, ge=1, description="Prompts generated together.")
        raw_prompts: bool = Field(
            default=False,
            description="Feed input_text to the model as is, without the training prompt "
            "format (chat template, prompt_template).",
        )
        limit: int | None = Field(default=None, ge=1, description="Use only the first N rows.")

        @field_validator("metrics")
        @classmethod
        def _unique(cls, value: list[MetricName]) -> list[MetricName]:
            return list(dict.fromkeys(value))

    config: Config

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self._rows: list[TextRow] | None = None

    def prepare(self) -> None:
        """Read and check the rows.

        Raises:
            EvaluatorInputError: a row is malformed, lacks a string reference or repeats an
                id (names file:line).
        """
        self._rows = read_rows(self.config.data, limit=self.config.limit)

    def evaluate(self, handle: ModelHandle) -> EvalResult:
        """Generate an answer per prompt and score it against the reference."""
        from evaluators.generation import generate_for

        if self._rows is None:
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
        return score_texts(outputs, rows, self.config.metrics)


def read_rows(path: Path, *, limit: int | None = None) -> list[TextRow]:
    """Return the rows of a text_metrics JSONL file.

    Raises:
        EvaluatorInputError: a row is not a JSON object, lacks a non-empty input_text
            (or prompt) or a string reference, or repeats an id.
    """
    row_id = RowIds(path)
    rows = []
    for lineno, row in read_jsonl(path, limit=limit):
        text = prompt_text(path, lineno, row)
        if "reference" not in row:
            raise EvaluatorInputError(
                f"{path}:{lineno}: row has no 'reference' field (the expected text)"
            )
        reference = row["reference"]
        if not isinstance(reference, str):
            raise EvaluatorInputError(
                f"{path}:{lineno}: reference must be a string, got {json_type(reference)}"
            )
        rows.append(
            TextRow(
                example_id=row_id(lineno, row), input_text=text, reference=reference, line=lineno
            )
        )
    return rows


def score_texts(
    outputs: list[str], rows: list[TextRow], metrics: list[MetricName] | tuple[MetricName, ...]
) -> EvalResult:
    """Score model outputs against the rows' references (no model involved).

    Args:
        outputs: the model's text for each row, in row order.
        rows: the rows (ids, inputs, references).
        metrics: metric families to compute (see `ALL_METRICS`).

    Returns:
        Corpus metrics (rouge1/rouge2/rougeL and exact_match as means over examples, bleu
        and chrf as sacrebleu corpus scores) and per-example scores (all but bleu).
    """
    from evaluators.metrics import load_metric

    if len(outputs) != len(rows):
        raise ValueError(f"{len(outputs)} outputs for {len(rows)} rows")
    predictions = [output.strip() for output in outputs]
    references = [row.reference.strip() for row in rows]
    corpus: dict[str, float] = {}
    per_example: dict[str, list[float]] = {}
    if not rows:
        return EvalResult(metrics={})
    if "rouge" in metrics:
        scores = load_metric("rouge").compute(
            predictions=predictions,
            references=references,
            rouge_types=list(ROUGE_TYPES),
            use_aggregator=False,
        )
        for key in ROUGE_TYPES:
            per_example[key] = scores[key]
            corpus[key] = sum(scores[key]) / len(scores[key])
    if "bleu" in metrics:
        bleu = load_metric("bleu").compute(predictions=predictions, references=references)
        corpus["bleu"] = bleu["score"]
    if "chrf" in metrics:
        chrf = load_metric("chrf")
        corpus["chrf"] = chrf.compute(predictions=predictions, references=references)["score"]
        per_example["chrf"] = chrf.compute(
            predictions=predictions, references=references, use_aggregator=False
        )["score"]
    if "exact_match" in metrics:
        matches = load_metric("exact_match").compute(
            predictions=predictions, references=references, use_aggregator=False
        )["exact_match"]
        per_example["exact_match"] = matches
        corpus["exact_match"] = sum(matches) / len(matches)
    examples = [
        ExampleScore(
            example_id=row.example_id,
            scores={key: float(values[i]) for key, values in per_example.items()},
            details={"input": row.input_text, "output": outputs[i], "reference": row.reference},
        )
        for i, row in enumerate(rows)
    ]
    return EvalResult(metrics={k: float(v) for k, v in corpus.items()}, examples=examples)
