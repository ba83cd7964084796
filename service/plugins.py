"""One plugin registry for every extension point: entry points by group, loaded lazily.

`PluginRegistry(group, base)` finds plugins through the entry-point group (built-ins are
registered in `pyproject.toml` the same way as third-party packages, so one lookup path
serves both), imports a plugin's module only when its name is asked for, checks that what
it names is a `base` subclass, and builds instances from a config validated against the
class's nested `Config`, naming the field that is wrong (`evaluators.<name>.<field>: ...`).
An unknown name raises `UnknownPluginError`: "Unknown evaluator 'x'. Did you mean ...".
The instances live with their plugins (`evaluators.registry`; monitors next); the service
reaches them by group through `registry_for`, so it imports no plugin package at module
level. It owns no plugin and reads no spec (`service.spec_loader` does).
"""

from __future__ import annotations

import importlib
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Generic, TypeVar, cast

from pydantic import BaseModel, ValidationError

from service.errors import EvalctlError, unknown_name

P = TypeVar("P")

# Where each group's registry is defined, so the service can reach it by group on demand.
HOMES = {"evalctl.evaluators": "evaluators.registry"}
# The spec sections whose `- name: {config}` entries name plugins of a group.
SPEC_SECTIONS = {"evaluators": "evalctl.evaluators"}
_REGISTRIES: dict[str, PluginRegistry[Any]] = {}


class UnknownPluginError(EvalctlError):
    """No plugin is registered under that name in the group."""


class PluginRegistry(Generic[P]):
    """The plugins of one entry-point group whose classes subclass `base`."""

    def __init__(
        self,
        group: str,
        base: type,  # type[P] would refuse an abstract base (mypy type-abstract)
        *,
        kind: str,
        spec_key: str,
        unknown_error: type[UnknownPluginError] = UnknownPluginError,
    ) -> None:
        self.group, self.base, self.kind, self.spec_key = group, base, kind, spec_key
        self.unknown_error = unknown_error
        _REGISTRIES[group] = self

    def available(self) -> dict[str, EntryPoint]:
        """Return every registered entry point of the group by name (nothing is imported)."""
        return {ep.name: ep for ep in entry_points(group=self.group)}

    def get(self, name: str) -> type[P]:
        """Return the class registered as `name`, importing only its module.

        Raises:
            UnknownPluginError: (the registry's subclass of it) with a "did you mean".
            EvalctlError: the entry point names something that is not a `base` subclass.
        """
        eps = self.available()
        if name not in eps:
            raise self.unknown_error(unknown_name(self.kind, name, eps))
        cls = eps[name].load()
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            base = with_article(self.base.__name__)
            raise EvalctlError(f"Entry point '{name}' in {self.group} is not {base} subclass")
        return cast(type[P], cls)

    def build(self, name: str, config: dict[str, Any] | None, context: Any = None) -> P:
        """Validate `config` against the plugin's `Config` and return an instance.

        `context` is passed to pydantic validation (the spec's folder, so that relative
        paths resolve against it). A bad config raises `EvalctlError` naming the field:
        `evaluators.<name>.<field>: <message>`.
        """
        cls = self.get(name)
        config_model: type[BaseModel] = cls.Config  # type: ignore[attr-defined]
        try:
            cfg = config_model.model_validate(config or {}, context=context)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise EvalctlError(f"{self.spec_key}.{name}.{where}: {first['msg']}") from None
        return cls(cfg)  # type: ignore[call-arg]


def registry_for(group: str) -> PluginRegistry[Any]:
    """Return the registry of entry-point `group`, importing the module that defines it."""
    if group not in _REGISTRIES:
        importlib.import_module(HOMES[group])
    return _REGISTRIES[group]


def with_article(word: str) -> str:
    """Return `word` after its indefinite article ("an evaluator", "a monitor")."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"
