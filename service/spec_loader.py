"""Read a spec YAML file and report every problem in it as `file:line:col: field: message`.

Owns reading the file (bytes, UTF-8, YAML syntax), remembering where each key and value sits
in the text, validating the result against `service.spec.Spec` and each evaluator's own
`Config`, and turning pydantic errors into short, human messages. It does not define the
spec's fields or rules (that is `service.spec`) and it does not build evaluators or load
models: a spec that loads has been checked, nothing has been run.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.scalarbool import ScalarBoolean

from evaluators import registry
from service.errors import EvalctlError, did_you_mean
from service.spec import Spec

Loc = tuple[str | int, ...]

# The field shown for problems that belong to the whole file (unreadable, bad YAML, wrong shape).
ROOT_FIELD = "(spec)"
# Aliases can make a small file expand into a huge tree ("billion laughs"); stop well before.
MAX_VALUES = 100_000
# A spec is a few KiB; text past this is refused before it is parsed.
MAX_SPEC_BYTES = 1_000_000


@dataclass
class SpecProblem:
    """One problem in a spec: where (1-based, None when unknown), which field, what is wrong."""

    line: int | None
    col: int | None
    field: str
    message: str

    def format(self, source: str) -> str:
        """Return the `SOURCE:LINE:COL: field: message` line for this problem."""
        return f"{source}:{self.line or 1}:{self.col or 1}: {self.field}: {self.message}"


class SpecError(EvalctlError):
    """A spec file has problems; `str()` lists them one per line, in file order."""

    def __init__(self, source: str, problems: list[SpecProblem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(p.format(source) for p in problems))


def dump_problems_json(err: SpecError) -> list[dict[str, Any]]:
    """Return the problems of `err` as JSON-ready dicts (with the source file)."""
    return [{"source": err.source, **asdict(p)} for p in err.problems]


@dataclass
class _Pos:
    key: tuple[int, int]
    value: tuple[int, int]


@dataclass
class _Doc:
    """The spec as plain Python values, plus the position of every key and list item."""

    data: Any
    where: dict[Loc, _Pos]

    def position(self, loc: Loc, *, at_key: bool = False) -> tuple[int, int]:
        """Return the 1-based position of `loc`, or of its closest parent that has one."""
        for n in range(len(loc), -1, -1):
            pos = self.where.get(loc[:n])
            if pos is not None:
                return pos.key if at_key or n < len(loc) else pos.value
        return (1, 1)

    def problem(self, loc: Loc, message: str, *, at_key: bool = False) -> SpecProblem:
        """Return a problem at `loc`, positioned in the file."""
        line, col = self.position(loc, at_key=at_key)
        field = ".".join(str(p) for p in loc) or ROOT_FIELD
        return SpecProblem(line, col, field, _one_line(message))


def load_spec(path: str | Path, *, check_files: bool = True) -> Spec:
    """Read, validate and return the spec at `path`; raise SpecError listing every problem."""
    return load_spec_text(_read_text(Path(path), str(path)), path, check_files=check_files)


def load_spec_text(text: str, path: str | Path, *, check_files: bool = True) -> Spec:
    """Validate spec `text` as if it were read from `path` (relative paths resolve there).

    Runners use it for a job's spec: the text queued with the job is the truth, the
    folder it was submitted from (on shared storage) anchors its relative paths.
    """
    source = str(path)
    _check_size(text, source)
    doc = _parse(text, source)
    base_dir = Path(path).absolute().parent
    context = {"base_dir": base_dir, "check_files": check_files}
    data = dict(doc.data)
    problems: list[SpecProblem] = []
    if isinstance(data.get("evaluators"), list):
        # Spec only sees the entries that passed, so a bad entry is reported once, by us.
        data["evaluators"], problems = _check_evaluators(data["evaluators"], doc, context)
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


def parse_spec_text(text: str, source: str) -> dict[str, Any]:
    """Parse spec `text` into plain values with the loader's limits, without validating it.

    For specs stored in the registry (a run's or job's `spec_text`): readers that only
    display or compare them must not expand aliases past `MAX_VALUES` or read huge text.
    Raise SpecError (one problem, located when YAML says where) if it cannot be parsed.
    """
    _check_size(text, source)
    return dict(_parse(text, source).data)


def _check_size(text: str, source: str) -> None:
    size = len(text) if len(text) * 4 <= MAX_SPEC_BYTES else len(text.encode("utf-8", "replace"))
    if size > MAX_SPEC_BYTES:
        raise _fail(source, f"spec is larger than {MAX_SPEC_BYTES} bytes ({size} bytes)")


def _fail(source: str, message: str, line: int | None = None, col: int | None = None) -> SpecError:
    return SpecError(source, [SpecProblem(line, col, ROOT_FIELD, _one_line(message))])


def _read_text(path: Path, source: str) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise _fail(source, "file not found") from None
    except IsADirectoryError:
        raise _fail(source, "is a folder, not a spec file") from None
    except PermissionError:
        raise _fail(source, "permission denied") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise _fail(source, f"cannot read file: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        start = raw.rfind(b"\n", 0, exc.start) + 1
        line = raw.count(b"\n", 0, exc.start) + 1
        col = len(raw[start : exc.start].decode("utf-8", "replace")) + 1
        bad = raw[exc.start]
        message = f"not valid UTF-8 (byte 0x{bad:02x}); save it as UTF-8"
        raise _fail(source, message, line, col) from None


def _parse(text: str, source: str) -> _Doc:
    try:
        root = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        line, col, message = _describe_yaml_error(exc)
        raise _fail(source, message, line, col) from None
    except ReaderError as exc:
        line, col = _offset_position(text, exc.position)
        message = f"invalid YAML: {exc.reason} (character #x{exc.character:04x})"
        raise _fail(source, message, line, col) from None
    except Exception as exc:  # ruamel raises plain ValueError/RecursionError on odd input
        raise _fail(source, f"invalid YAML: {_odd_yaml_reason(exc)}") from None
    if root is None:
        raise _fail(source, "spec is empty")
    if not isinstance(root, CommentedMap):  # what the round-trip loader makes of a mapping
        line, col = _first_content(text)
        raise _fail(source, f"spec must be a mapping of keys, got {_kind(root)}", line, col)
    where: dict[Loc, _Pos] = {}
    first = (root.lc.line + 1, root.lc.col + 1)
    where[()] = _Pos(first, first)
    try:
        data = _plain(root, (), where, [0])
    except RecursionError:
        raise _fail(source, "spec is nested too deeply") from None
    except _TooLargeError:
        message = f"spec has over {MAX_VALUES} values once aliases are expanded"
        raise _fail(source, message) from None
    return _Doc(data, where)


def _describe_yaml_error(exc: MarkedYAMLError) -> tuple[int | None, int | None, str]:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
    problem = exc.problem or exc.context or "syntax error"
    if "'\\t'" in problem:
        return line, col, "tab character: indent YAML with spaces, not tabs"
    if "another document" in problem:
        return line, col, "a spec is one YAML document; remove the extra '---'"
    if "duplicate key" in problem:
        return line, col, problem
    context = ""
    if exc.context and exc.problem and exc.context_mark is not None:
        context = f" ({exc.context} at line {exc.context_mark.line + 1})"
    return line, col, f"invalid YAML: {problem}{context}"


def _odd_yaml_reason(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if "integer string conversion" in str(exc):
        return "a number has too many digits"
    return f"{type(exc).__name__}: {exc}"


def _offset_position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _first_content(text: str) -> tuple[int, int]:
    """Return where the first non-blank, non-comment text starts (for top-level scalars)."""
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.lstrip()
        if stripped and not stripped.startswith("#"):
            return number, len(line) - len(stripped) + 1
    return 1, 1


class _TooLargeError(Exception):
    pass


def _plain(node: Any, loc: Loc, where: dict[Loc, _Pos], count: list[int]) -> Any:
    """Return `node` as plain dict/list/str/int/float/bool, recording positions in `where`."""
    count[0] += 1
    if count[0] > MAX_VALUES:
        raise _TooLargeError
    if isinstance(node, dict):
        marks = node.lc.data if hasattr(node, "lc") else {}
        out: dict[str, Any] = {}
        for key, value in node.items():
            name = _key_name(key)
            mark = marks.get(key)  # keys pulled in by a `<<:` merge have no mark of their own
            if mark is not None:
                key_pos = (mark[0] + 1, mark[1] + 1)
                scalar = value is not None and not isinstance(value, (dict, list))
                value_pos = (mark[2] + 1, mark[3] + 1) if scalar else key_pos
                where[(*loc, name)] = _Pos(key_pos, value_pos)
            out[name] = _plain(value, (*loc, name), where, count)
        return out
    if isinstance(node, list):
        marks = node.lc.data if hasattr(node, "lc") else {}
        for i in range(len(node)):
            if i in marks:
                pos = (marks[i][0] + 1, marks[i][1] + 1)
                where[(*loc, i)] = _Pos(pos, pos)
        return [_plain(item, (*loc, i), where, count) for i, item in enumerate(node)]
    return _plain_scalar(node)


def _plain_scalar(node: Any) -> Any:
    # ruamel keeps style and anchors in subclasses of int/float/str; models want the plain type.
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, ScalarBoolean):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    if hasattr(node, "tag") and hasattr(node, "value"):  # a TaggedScalar such as `!env X`
        return str(node.value)
    return node


def _key_name(key: Any) -> str:
    # Models want string keys; spell YAML's null/true/false keys the way the user wrote them.
    if key is None or isinstance(key, bool):
        return "null" if key is None else str(key).lower()
    return str(key)


def _check_evaluators(
    items: list[Any], doc: _Doc, context: dict[str, Any]
) -> tuple[list[Any], list[SpecProblem]]:
    """Check each `{name: config}` entry; return the good entries and the problems."""
    good: list[Any] = []
    problems: list[SpecProblem] = []
    first_seen: dict[str, Loc] = {}
    for i, item in enumerate(items):
        loc: Loc = ("evaluators", i)
        if not isinstance(item, dict):
            hint = f"; write '- {item}: {{}}' to use its defaults" if isinstance(item, str) else ""
            message = f"expected a mapping {{name: config}}, got {_kind(item)}{hint}"
            problems.append(doc.problem(loc, message))
            continue
        if len(item) != 1:
            problems.append(doc.problem(loc, _entry_keys_message(list(item)), at_key=True))
            continue
        ((name, config),) = item.items()
        if name in first_seen:
            line, _ = doc.position(first_seen[name], at_key=True)
            message = f"duplicate evaluator '{name}' (first at line {line})"
            problems.append(doc.problem((*loc, name), message, at_key=True))
            continue
        first_seen[name] = (*loc, name)
        found = _check_evaluator(name, config, loc, doc, context)
        problems += found
        if not found:
            good.append(item)
    return good, problems


def _entry_keys_message(keys: list[str]) -> str:
    if not keys:
        return "empty evaluator entry: write '- name: {config}'"
    names = ", ".join(f"'{k}'" for k in keys)
    return (
        f"an evaluator entry has exactly one key, its name (got {names}); "
        "is the config indented under the name?"
    )


def _check_evaluator(
    name: str, config: Any, loc: Loc, doc: _Doc, context: dict[str, Any]
) -> list[SpecProblem]:
    """Look `name` up in the registry and validate `config` against its Config."""
    where: Loc = (*loc, name)
    try:
        cls = registry.get_evaluator_class(name)
    except EvalctlError as exc:
        return [doc.problem(where, str(exc), at_key=True)]
    except Exception as exc:  # a broken plugin must not crash spec checking
        message = f"evaluator '{name}' could not be loaded: {type(exc).__name__}: {exc}"
        return [doc.problem(where, message, at_key=True)]
    try:
        cls.Config.model_validate({} if config is None else config, context=context)
    except ValidationError as exc:
        return _problems_from(exc, cls.Config, where, doc)
    except Exception as exc:  # third-party validators may raise anything
        message = f"evaluator '{name}' config check failed: {type(exc).__name__}: {exc}"
        return [doc.problem(where, message, at_key=True)]
    return []


def _problems_from(
    exc: ValidationError, model: type[BaseModel], prefix: Loc, doc: _Doc
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
    err: ErrorDetails, model: type[BaseModel], loc: Loc, prefix: Loc, doc: _Doc
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
        return f"expected a mapping of keys, got {_kind(value)}"
    if kind == "literal_error" and isinstance(value, str):
        options = re.findall(r"'([^']*)'", str((err.get("ctx") or {}).get("expected", "")))
        return f"{msg}, got {_short(value)}.{did_you_mean(value, options)}".rstrip(".")
    if kind == "string_pattern_mismatch" and _is_slug(err):
        return (
            f"{_short(value)} is not a valid name: use letters, digits, '.', '_' and '-' "
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


_KINDS = ((bool, "a boolean"), (int | float, "a number"), (str, "a string"), (list, "a list"))


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    return next((name for t, name in _KINDS if isinstance(value, t)), f"a {type(value).__name__}")


def _short(value: str, limit: int = 60) -> str:
    return repr(value if len(value) <= limit else value[: limit - 3] + "...")


def _one_line(message: str) -> str:
    return " ".join(message.split())
