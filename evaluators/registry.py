"""The evaluator plugin registry: entry-point group `evalctl.evaluators`.

Built-in evaluators are registered through the same entry points as third-party ones
(see `pyproject.toml`), so one lookup path serves both. Loading a name imports only that
plugin's module; heavy libraries are imported inside `evaluate`.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

from pydantic import ValidationError

from evaluators.base import Evaluator
from service.errors import EvalctlError, unknown_name

GROUP = "evalctl.evaluators"


class UnknownEvaluatorError(EvalctlError):
    """No evaluator is registered under that name."""


def available() -> dict[str, EntryPoint]:
    """Return every registered evaluator entry point by name."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def get_evaluator_class(name: str) -> type[Evaluator]:
    """Return the evaluator class registered as `name`.

    Raises:
        UnknownEvaluatorError: with a "did you mean" suggestion.
    """
    eps = available()
    if name not in eps:
        raise UnknownEvaluatorError(unknown_name("evaluator", name, eps))
    cls = eps[name].load()
    if not (isinstance(cls, type) and issubclass(cls, Evaluator)):
        raise EvalctlError(f"Entry point '{name}' in {GROUP} is not an Evaluator subclass")
    return cls


def build_evaluator(name: str, config: dict[str, Any] | None, context: Any = None) -> Evaluator:
    """Validate `config` against the plugin's Config and return an instance.

    `context` is passed to pydantic validation (it carries the spec's folder so that
    relative paths resolve against it).
    """
    cls = get_evaluator_class(name)
    try:
        cfg = cls.Config.model_validate(config or {}, context=context)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise EvalctlError(f"evaluators.{name}.{where}: {first['msg']}") from None
    return cls(cfg)
