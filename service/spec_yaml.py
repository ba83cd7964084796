"""Read spec text as YAML, within limits, remembering where every key and value sits.

Owns the reading half of the spec loader (`service.spec_loader` validates): bytes to
UTF-8, YAML syntax errors as located problems, the size limit (`MAX_SPEC_BYTES`) and the
alias-expansion limit (`MAX_VALUES`, against "billion laughs"), plain Python values with
the 1-based position of each key and list item (`Doc`), and the problem types
(`SpecProblem`, `SpecError`). `parse_spec_text` is what readers of stored specs use.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.scalarbool import ScalarBoolean

from service.errors import EvalctlError

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
class Pos:
    key: tuple[int, int]
    value: tuple[int, int]


@dataclass
class Doc:
    """The spec as plain Python values, plus the position of every key and list item."""

    data: Any
    where: dict[Loc, Pos]

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
        return SpecProblem(line, col, field, one_line(message))


def parse_spec_text(text: str, source: str) -> dict[str, Any]:
    """Parse spec `text` into plain values with the loader's limits, without validating it.

    For specs stored in the registry (a run's or job's `spec_text`): readers that only
    display or compare them must not expand aliases past `MAX_VALUES` or read huge text.
    Raise SpecError (one problem, located when YAML says where) if it cannot be parsed.
    """
    check_size(text, source)
    return dict(parse(text, source).data)


def check_size(text: str, source: str) -> None:
    size = len(text) if len(text) * 4 <= MAX_SPEC_BYTES else len(text.encode("utf-8", "replace"))
    if size > MAX_SPEC_BYTES:
        raise fail(source, f"spec is larger than {MAX_SPEC_BYTES} bytes ({size} bytes)")


def fail(source: str, message: str, line: int | None = None, col: int | None = None) -> SpecError:
    return SpecError(source, [SpecProblem(line, col, ROOT_FIELD, one_line(message))])


def read_text(path: Path, source: str) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise fail(source, "file not found") from None
    except IsADirectoryError:
        raise fail(source, "is a folder, not a spec file") from None
    except PermissionError:
        raise fail(source, "permission denied") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise fail(source, f"cannot read file: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        start = raw.rfind(b"\n", 0, exc.start) + 1
        line = raw.count(b"\n", 0, exc.start) + 1
        col = len(raw[start : exc.start].decode("utf-8", "replace")) + 1
        bad = raw[exc.start]
        message = f"not valid UTF-8 (byte 0x{bad:02x}); save it as UTF-8"
        raise fail(source, message, line, col) from None


def parse(text: str, source: str) -> Doc:
    try:
        root = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        line, col, message = _describe_yaml_error(exc)
        raise fail(source, message, line, col) from None
    except ReaderError as exc:
        line, col = _offset_position(text, exc.position)
        message = f"invalid YAML: {exc.reason} (character #x{exc.character:04x})"
        raise fail(source, message, line, col) from None
    except Exception as exc:  # ruamel raises plain ValueError/RecursionError on odd input
        raise fail(source, f"invalid YAML: {_odd_yaml_reason(exc)}") from None
    if root is None:
        raise fail(source, "spec is empty")
    if not isinstance(root, CommentedMap):  # what the round-trip loader makes of a mapping
        line, col = _first_content(text)
        raise fail(source, f"spec must be a mapping of keys, got {kind_of(root)}", line, col)
    where: dict[Loc, Pos] = {}
    first = (root.lc.line + 1, root.lc.col + 1)
    where[()] = Pos(first, first)
    try:
        data = _plain(root, (), where, [0])
    except RecursionError:
        raise fail(source, "spec is nested too deeply") from None
    except _TooLargeError:
        message = f"spec has over {MAX_VALUES} values once aliases are expanded"
        raise fail(source, message) from None
    return Doc(data, where)


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


def _plain(node: Any, loc: Loc, where: dict[Loc, Pos], count: list[int]) -> Any:
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
                where[(*loc, name)] = Pos(key_pos, value_pos)
            out[name] = _plain(value, (*loc, name), where, count)
        return out
    if isinstance(node, list):
        marks = node.lc.data if hasattr(node, "lc") else {}
        for i in range(len(node)):
            if i in marks:
                pos = (marks[i][0] + 1, marks[i][1] + 1)
                where[(*loc, i)] = Pos(pos, pos)
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


_KINDS = ((bool, "a boolean"), (int | float, "a number"), (str, "a string"), (list, "a list"))


def kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    return next((name for t, name in _KINDS if isinstance(value, t)), f"a {type(value).__name__}")


def short(value: str, limit: int = 60) -> str:
    return repr(value if len(value) <= limit else value[: limit - 3] + "...")


def one_line(message: str) -> str:
    return " ".join(message.split())
