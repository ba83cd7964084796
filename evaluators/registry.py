"""The evaluator plugin registry: entry-point group `evalctl.evaluators`.

One instance of `service.plugins.PluginRegistry` (monitors will be another). Built-in
evaluators are registered through the same entry points as third-party ones (see
`pyproject.toml`), so one lookup path serves both. Loading a name imports only that
plugin's module; heavy libraries are imported inside `evaluate`. The functions below are
the names callers have always used; they go through `registry`.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Any

from evaluators.base import Evaluator
from service.plugins import PluginRegistry, UnknownPluginError

GROUP = "evalctl.evaluators"


class UnknownEvaluatorError(UnknownPluginError):
    """No evaluator is registered under that name."""


registry: PluginRegistry[Evaluator] = PluginRegistry(
    GROUP, Evaluator, kind="evaluator", spec_key="evaluators", unknown_error=UnknownEvaluatorError
)


def available() -> dict[str, EntryPoint]:
    """Return every registered evaluator entry point by name."""
    return registry.available()


def get_evaluator_class(name: str) -> type[Evaluator]:
    """Return the evaluator class registered as `name`.

    Raises:
        UnknownEvaluatorError: with a "did you mean" suggestion.
    """
    return registry.get(name)


def build_evaluator(name: str, config: dict[str, Any] | None, context: Any = None) -> Evaluator:
    """Validate `config` against the plugin's Config and return an instance.

    `context` is passed to pydantic validation (it carries the spec's folder so that
    relative paths resolve against it).
    """
    return registry.build(name, config, context)
