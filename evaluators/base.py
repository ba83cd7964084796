"""The evaluator contract: what a plugin receives and what it must return.

An evaluator is one class with a `name`, a nested pydantic `Config` (validated from the
spec, unknown keys rejected) and `evaluate(handle) -> EvalResult`. It does not load models
(the caller hands it a loaded model through `ModelHandle`) and it does not write to the
registry (the caller records the result).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from service.errors import EvalctlError


class EvaluatorInputError(EvalctlError):
    """An evaluator's inputs (files, schema, prompts) are unusable; raised before generating."""


class ExampleScore(BaseModel):
    """One example's scores, so the gate can pair candidate and baseline per example."""

    example_id: str = Field(description="Stable id of the example (row id or line number).")
    scores: dict[str, float] = Field(default_factory=dict, description="Metric -> value.")
    details: dict[str, Any] = Field(
        default_factory=dict, description="Prompt, output, reference, error: for display."
    )


class EvalResult(BaseModel):
    """Aggregate metrics plus per-example scores and artifact paths."""

    metrics: dict[str, float]
    examples: list[ExampleScore] = Field(default_factory=list)
    artifacts: dict[str, str] = Field(default_factory=dict)


@dataclass
class ModelHandle:
    """A loaded model (base, base + adapter, or a model mid-training) for evaluators."""

    model: Any
    tokenizer: Any
    model_hash: str
    render_prompt: Callable[[str], str] = field(default=lambda text: text)
    cache_dir: Path | None = None

    @property
    def device(self) -> Any:
        """Return the device the model's parameters live on."""
        return next(self.model.parameters()).device


class Evaluator(ABC):
    """Base class of every evaluator plugin (see `evaluators.json_schema` for an example)."""

    name: ClassVar[str]

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def __init__(self, config: Config) -> None:
        self.config = config

    def prepare(self) -> None:  # noqa: B027 - optional hook
        """Load and check inputs before any model work.

        Raises:
            EvaluatorInputError: an input file is missing or malformed (name file:line).
        """

    @abstractmethod
    def evaluate(self, handle: ModelHandle) -> EvalResult:
        """Score the model.

        Args:
            handle: the loaded model, its tokenizer, its hash and the prompt renderer.

        Returns:
            Metrics (names without the evaluator prefix) and per-example scores.
        """
