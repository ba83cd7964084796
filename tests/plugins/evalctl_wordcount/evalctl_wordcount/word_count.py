"""`word_count`: how many words the checkpoint writes per prompt, and how often it stays short.

Written the way a third party would: it imports only evalctl's public contract
(`evaluators.base`) and the generation entry point.
"""

from __future__ import annotations

from pydantic import Field

from evaluators.base import EvalResult, Evaluator, ExampleScore, ModelHandle


class WordCountEvaluator(Evaluator):
    """Generate for fixed prompts and count words in each answer."""

    name = "word_count"

    class Config(Evaluator.Config):
        prompts: list[str] = Field(min_length=1, description="Prompts to answer.")
        max_words: int = Field(default=20, ge=1, description="Answers up to this are short.")
        max_new_tokens: int = Field(default=16, ge=1, description="Tokens generated at most.")

    def evaluate(self, handle: ModelHandle) -> EvalResult:
        """Count words per answer; report the mean and the share of short answers."""
        from evaluators.generation import generate_for

        prompts = [handle.render_prompt(p) for p in self.config.prompts]
        outputs = generate_for(handle, prompts, max_new_tokens=self.config.max_new_tokens)
        counts = [len(text.split()) for text in outputs]
        short = [float(c <= self.config.max_words) for c in counts]
        return EvalResult(
            metrics={
                "mean_words": sum(counts) / len(counts),
                "short_rate": sum(short) / len(short),
            },
            examples=[
                ExampleScore(
                    example_id=str(i),
                    scores={"words": float(c), "short": s},
                    details={"output": out},
                )
                for i, (c, s, out) in enumerate(zip(counts, short, outputs, strict=True))
            ],
        )
