"""Read a spec YAML file and report every problem in it as `file:line:col: field: message`.

Owns validating a spec: the text is read by `service.spec_yaml` (bytes, UTF-8, YAML
syntax, limits, where each key and value sits), then checked against `service.spec.Spec`
and each plugin's own `Config` (the entries of a plugin section such as `evaluators:`,
looked up by group through `service.plugins`), with pydantic errors turned into short,
human messages. It does not define the spec's fields or rules (that is `service.spec`)
and it does not build plugins or load models: a spec that loads has been checked, nothing
has been run. The problem types and `parse_spec_text` are re-exported from here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from service import plugins
from service.errors import EvalctlError, did_you_mean
from service.spec import Spec
from service.spec_yaml import (  # noqa: F401  (re-exported: the loader's public names)
    MAX_SPEC_BYTES,
    MAX_VALUES,
    ROOT_FIELD,
    Doc,
    Loc,
    SpecError,
    SpecProblem,
    check_size,
    dump_problems_json,
    kind_of,
    one_line,
    parse,
    parse_spec_text,
    read_text,
    short,
)


def load_spec(path: str | Path, *, check_files: bool = True) -> Spec:
    """Read, validate and return the spec at `path`; raise SpecError listing every problem."""
    return load_spec_text(read_text(Path(path), str(path)), path, check_files=check_files)


def load_spec_text(text: str, path: str | Path, *, check_files: bool = True) -> Spec:
    """Validate spec `text` as if it were read from `path` (relative paths resolve there).

    Runners use it for a job's spec: the text queued with the job is the truth, the
    folder it was submitted from (on shared storage) anchors its relative paths.
    """
    source = str(path)
    check_size(text, source)
    doc = parse(text, source)
    base_dir = Path(path).absolute().parent
    context = {"base_dir": base_dir, "check_files": check_files}
    data = dict(doc.data)
    problems: list[SpecProblem] = []
    for section, group in plugins.SPEC_SECTIONS.items():
        if isinstance(data.get(section), list):
            # Spec only sees the entries that passed, so a bad entry is reported once, by us.
            registry = plugins.registry_for(group)
            data[section], found = _check_plugins(registry, data[section], doc, context)
            problems += found
    try:
        spec = Spec.model_validate(data, context=context)
    except ValidationError as exc:
        problems += _problems_from(exc, Spec, (), doc)
    if problems:
        problems.sort(key=lambda p: (p.line or 1, p.col or 1))
        raise SpecError(source, problems)
    spec._source = Path(path)
    spec._text = text
    return spec


def _check_plugins(
    registry: plugins.PluginRegistry[Any], items: list[Any], doc: Doc, context: dict[str, Any]
) -> tuple[list[Any], list[SpecProblem]]:
    """Check each `{name: config}` entry of a plugin section; return good ones and problems."""
    good: list[Any] = []
    problems: list[SpecProblem] = []
    first_seen: dict[str, Loc] = {}
    kind = registry.kind
    for i, item in enumerate(items):
        loc: Loc = (registry.spec_key, i)
        if not isinstance(item, dict):
            hint = f"; write '- {item}: {{}}' to use its defaults" if isinstance(item, str) else ""
            message = f"expected a mapping {{name: config}}, got {kind_of(item)}{hint}"
            problems.append(doc.problem(loc, message))
            continue
        if len(item) != 1:
            message = _entry_keys_message(list(item), kind)
            problems.append(doc.problem(loc, message, at_key=True))
            continue
        ((name, config),) = item.items()
        if name in first_seen:
            line, _ = doc.position(first_seen[name], at_key=True)
            message = f"duplicate {kind} '{name}' (first at line {line})"
            problems.append(doc.problem((*loc, name), message, at_key=True))
            continue
        first_seen[name] = (*loc, name)
        found = _check_plugin(registry, name, config, loc, doc, context)
        problems += found
        if not found:
            good.append(item)
    return good, problems


def _entry_keys_message(keys: list[str], kind: str) -> str:
    if not keys:
        return f"empty {kind} entry: write '- name: {{config}}'"
    names = ", ".join(f"'{k}'" for k in keys)
    return (
        f"{plugins.with_article(kind)} entry has exactly one key, its name (got {names}); "
        "is the config indented under the name?"
    )


def _check_plugin(
    registry: plugins.PluginRegistry[Any],
    name: str,
    config: Any,
    loc: Loc,
    doc: Doc,
    context: dict[str, Any],
) -> list[SpecProblem]:
    """Look `name` up in the plugin registry and validate `config` against its Config."""
    where: Loc = (*loc, name)
    kind = registry.kind
    try:
        cls = registry.get(name)
    except EvalctlError as exc:
        return [doc.problem(where, str(exc), at_key=True)]
    except Exception as exc:  # a broken plugin must not crash spec checking
        message = f"{kind} '{name}' could not be loaded: {type(exc).__name__}: {exc}"
        return [doc.problem(where, message, at_key=True)]
    model: type[BaseModel] = cls.Config
    try:
        model.model_validate({} if config is None else config, context=context)
    except ValidationError as exc:
        return _problems_from(exc, model, where, doc)
    except Exception as exc:  # third-party validators may raise anything
        message = f"{kind} '{name}' config check failed: {type(exc).__name__}: {exc}"
        return [doc.problem(where, message, at_key=True)]
    return []


def _problems_from(
    exc: ValidationError, model: type[BaseModel], prefix: Loc, doc: Doc
) -> list[SpecProblem]:
    """Turn pydantic errors for `model` (found at `prefix`) into one problem per location."""
    groups: dict[Loc, list[tuple[Loc, ErrorDetails]]] = {}
    unions: set[Loc] = set()
    for err in exc.errors(include_url=False):
        loc, union_at = _clean_loc((*prefix, *err["loc"]), doc.data)
        if union_at is not None:
            unions.add(union_at)
        groups.setdefault(union_at if union_at is not None else loc, []).append((loc, err))
    problems = []
    for group_loc, errors in groups.items():
        deepest = max(len(loc) for loc, _ in errors)
        if group_loc in unions and deepest == len(group_loc) and len(errors) > 1:
            # Every union member failed at the same place: say what each would have wanted.
            messages = dict.fromkeys(_message(err, model, loc, prefix) for loc, err in errors)
            first, *rest = messages
            text = " or ".join([first, *(m.removeprefix("Input should be ") for m in rest)])
            problems.append(doc.problem(group_loc, text))
            continue
        seen: set[Loc] = set()
        for loc, err in errors:
            if len(loc) != deepest or loc in seen:
                continue  # keep the union member that got furthest, one line per location
            seen.add(loc)
            problems.append(_problem_for(err, model, loc, prefix, doc))
    return problems


def _problem_for(
    err: ErrorDetails, model: type[BaseModel], loc: Loc, prefix: Loc, doc: Doc
) -> SpecProblem:
    message = _message(err, model, loc, prefix)
    # A cross-field check names the field it is about first ("training.x needs data.eval").
    head, _, rest = message.partition(" ")
    anchor = (*loc, *(int(p) if p.isdigit() else p for p in head.split(".")))
    if err["type"] == "value_error" and "." in head and anchor in doc.where and rest:
        return doc.problem(anchor, rest, at_key=True)
    return doc.problem(loc, message, at_key=err["type"] == "extra_forbidden")


def _clean_loc(loc: Loc, data: Any) -> tuple[Loc, Loc | None]:
    """Drop pydantic's union-member tags ('list[str]', ...) from `loc`.

    Returns the location as it is in the YAML and, when a tag was dropped, where the union is.
    """
    node = data
    kept: list[str | int] = []
    union_at: Loc | None = None
    for i, part in enumerate(loc):
        if _has(node, part):
            node = node[part]
        elif not (isinstance(node, dict | None) and i == len(loc) - 1):  # a missing key stays
            if union_at is None:
                union_at = tuple(kept)
            continue
        kept.append(part)
    return tuple(kept), union_at


def _has(node: Any, part: str | int) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def _message(err: ErrorDetails, model: type[BaseModel], loc: Loc, prefix: Loc) -> str:
    """Return a short human message for one pydantic error."""
    kind, msg, value = err["type"], err["msg"], err.get("input")
    if kind == "extra_forbidden":
        options = _field_names(_model_at(model, loc[len(prefix) : -1]))
        hint = did_you_mean(str(loc[-1]), options)
        if not hint and options:
            hint = f" Allowed: {', '.join(sorted(options))}"
        return f"unknown key '{loc[-1]}'.{hint}"
    if kind == "missing":
        return "missing required key"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping of keys, got {kind_of(value)}"
    if kind == "literal_error" and isinstance(value, str):
        options = re.findall(r"'([^']*)'", str((err.get("ctx") or {}).get("expected", "")))
        return f"{msg}, got {short(value)}.{did_you_mean(value, options)}".rstrip(".")
    if kind == "string_pattern_mismatch" and _is_slug(err):
        return (
            f"{short(value)} is not a valid name: use letters, digits, '.', '_' and '-' "
            "(starting with a letter or digit, at most 100 characters)"
        )
    return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _model_at(model: type[BaseModel] | None, loc: Loc) -> type[BaseModel] | None:
    """Return the model class that validates the mapping at `loc` (relative to `model`)."""
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue  # a list item has the list's element model
        field = model.model_fields.get(part)
        model = _find_model(field.annotation) if field is not None else None
    return model


def _find_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _find_model(arg)
        if found is not None:
            return found
    return None


def _field_names(model: type[BaseModel] | None) -> list[str]:
    if model is None:
        return []
    return [field.alias or name for name, field in model.model_fields.items()]


def _is_slug(err: ErrorDetails) -> bool:
    pattern = (err.get("ctx") or {}).get("pattern")
    name_meta = Spec.model_fields["name"].metadata
    return any(getattr(m, "pattern", None) == pattern for m in name_meta)
