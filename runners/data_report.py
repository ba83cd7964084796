"""The data report: what a user should know about their training data before training.

Owns the numbers computed from tokenized sets (row counts, token-length distributions,
duplicates, empty fields, train/eval overlap, file hashes for the registry), the one-line
warnings derived from them, and their rich rendering. Reading and tokenizing is
`runners.data` (which re-exports this module's API).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from rich.table import Table

    from runners.data import TokenizedSet

#: How many line numbers a report keeps per finding, and how many a warning shows.
FEW = 10
SHOWN = 3


class LengthStats(BaseModel):
    """A token-length distribution (nearest-rank percentiles)."""

    min: int
    p50: int
    p90: int
    p99: int
    max: int
    mean: float


class FileReport(BaseModel):
    """The checks of one data file."""

    path: str
    sha256: str
    rows_read: int = Field(description="Non-blank lines.")
    kept: int = Field(description="Examples that will be trained on / evaluated.")
    skipped_bad: int = Field(description="Malformed rows skipped (on_bad_rows: skip).")
    dropped_long: int = Field(description="Rows over max_seq_len dropped (on_long_rows: drop).")
    truncated: int = Field(description="Rows over max_seq_len whose completion was cut.")
    prompt_too_long: int = Field(description="Rows dropped: the prompt alone fills max_seq_len.")
    no_target: int = Field(default=0, description="Rows dropped: nothing to learn.")
    over_max_seq_len: int = Field(description="Rows longer than max_seq_len (before cutting).")
    training_tokens: int = Field(description="Tokens in the kept examples.")
    prompt_tokens: LengthStats | None = None
    total_tokens: LengthStats | None = None
    duplicates: int = Field(description="Rows whose prompt + completion repeat an earlier row.")
    duplicate_lines: list[tuple[int, int]] = Field(description="(line, line it repeats).")
    empty_fields: int = Field(description="Rows with an empty input or completion.")
    empty_field_lines: list[tuple[int, str]] = Field(description="(line, what is empty).")
    problems: list[str] = Field(default_factory=list, description="Skipped bad rows.")


class DataReport(BaseModel):
    """The checks of the train (and eval) data, with one-line warnings."""

    max_seq_len: int
    train: FileReport
    eval: FileReport | None = None
    overlap: int = Field(default=0, description="Eval rows whose exact text is in train.")
    overlap_lines: list[tuple[int, int]] = Field(
        default_factory=list, description="(eval line, train line)."
    )
    warnings: list[str] = Field(default_factory=list)

    @property
    def hashes(self) -> dict[str, str]:
        """Return the sha256 of each data file, keyed 'train' / 'eval' (run lineage)."""
        out = {"train": self.train.sha256}
        if self.eval is not None:
            out["eval"] = self.eval.sha256
        return out


def check_data(train: TokenizedSet, eval: TokenizedSet | None = None) -> DataReport:
    """Return the data report for a train set and an optional eval set."""
    report = DataReport(
        max_seq_len=train.max_seq_len,
        train=file_report(train),
        eval=file_report(eval) if eval is not None else None,
    )
    if eval is not None:
        seen: dict[bytes, int] = {}
        for info in train.info:
            seen.setdefault(info.key, info.line)
        pairs = [(i.line, seen[i.key]) for i in eval.info if i.key in seen]
        report.overlap, report.overlap_lines = len(pairs), pairs[:FEW]
    report.warnings = _warnings(report)
    return report


def file_report(data: TokenizedSet) -> FileReport:
    """Return the checks of one tokenized file."""
    first: dict[bytes, int] = {}
    duplicates: list[tuple[int, int]] = []
    for info in data.info:
        if info.key in first:
            duplicates.append((info.line, first[info.key]))
        else:
            first[info.key] = info.line
    empty = [(i.line, i.empty) for i in data.info if i.empty]
    return FileReport(
        path=data.display_path,
        sha256=data.sha256,
        rows_read=data.rows_read,
        kept=len(data.rows),
        skipped_bad=data.bad_rows,
        dropped_long=data.dropped_long,
        truncated=data.truncated,
        prompt_too_long=data.prompt_too_long,
        no_target=data.no_target,
        over_max_seq_len=sum(i.total_tokens > data.max_seq_len for i in data.info),
        training_tokens=sum(len(r["input_ids"]) for r in data.rows),
        prompt_tokens=length_stats([i.prompt_tokens for i in data.info]),
        total_tokens=length_stats([i.total_tokens for i in data.info]),
        duplicates=len(duplicates),
        duplicate_lines=duplicates[:FEW],
        empty_fields=len(empty),
        empty_field_lines=empty[:FEW],
        problems=data.problems if data.bad_rows else [],
    )


def length_stats(values: Sequence[int]) -> LengthStats | None:
    """Return min/p50/p90/p99/max/mean of `values` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)

    def rank(p: int) -> int:
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    return LengthStats(
        min=ordered[0],
        p50=rank(50),
        p90=rank(90),
        p99=rank(99),
        max=ordered[-1],
        mean=round(sum(ordered) / len(ordered), 1),
    )


def _warnings(report: DataReport) -> list[str]:
    out: list[str] = []
    limit = report.max_seq_len
    for name, f in (("train", report.train), ("eval", report.eval)):
        if f is None:
            continue
        if f.skipped_bad:
            first = f.problems[0]
            out.append(f"{name}: skipped {_n(f.skipped_bad, 'bad row')} (first: {first})")
        if f.prompt_too_long:
            out.append(
                f"{name}: dropped {_n(f.prompt_too_long, 'row')} whose prompt alone fills "
                f"training.max_seq_len ({limit})"
            )
        if f.duplicates:
            shown = _shown([f"line {a} = line {b}" for a, b in f.duplicate_lines], f.duplicates)
            out.append(f"{name}: {_n(f.duplicates, 'duplicate row')} ({shown})")
        if f.empty_fields:
            shown = _shown([f"line {a}: empty {w}" for a, w in f.empty_field_lines], f.empty_fields)
            out.append(f"{name}: {_n(f.empty_fields, 'row')} with an empty field ({shown})")
    if report.overlap:
        pairs = [f"eval line {a} = train line {b}" for a, b in report.overlap_lines]
        out.append(
            f"eval: {_n(report.overlap, 'row')} also in train ({_shown(pairs, report.overlap)})"
        )
    return out


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _shown(items: list[str], total: int) -> str:
    """Return the first few items joined, with ', ...' when there are more."""
    return ", ".join(items[:SHOWN]) + (", ..." if total > SHOWN else "")


def render_report(report: DataReport) -> Table:
    """Return the report's numbers as a rich table, train and eval side by side.

    The warnings are not in it: callers print (and log) `report.warnings` themselves.
    """
    from rich.table import Table

    files = [("train", report.train)] + ([("eval", report.eval)] if report.eval else [])
    table = Table(
        title=f"data (max_seq_len {report.max_seq_len})",
        title_justify="left",
        caption="tokens: min/p50/p90/p99/max (mean)",
        caption_justify="left",
    )
    table.add_column("", no_wrap=True)
    for name, _ in files:
        table.add_column(name, justify="right")
    for label, get in _ROWS:
        table.add_row(label, *(get(f) for _, f in files if f is not None))
    if report.eval is not None:
        table.add_row("eval rows also in train", "", str(report.overlap))
    return table


def _dist(stats: LengthStats | None) -> str:
    if stats is None:
        return "-"
    return f"{stats.min}/{stats.p50}/{stats.p90}/{stats.p99}/{stats.max} ({stats.mean:g})"


_ROWS: list[tuple[str, Any]] = [
    ("file", lambda f: f.path),
    ("sha256", lambda f: f.sha256[:12]),
    ("rows read", lambda f: str(f.rows_read)),
    ("kept", lambda f: str(f.kept)),
    ("skipped (bad)", lambda f: str(f.skipped_bad)),
    ("over max_seq_len", lambda f: str(f.over_max_seq_len)),
    ("  truncated", lambda f: str(f.truncated)),
    ("  dropped (long)", lambda f: str(f.dropped_long)),
    ("  prompt too long (dropped)", lambda f: str(f.prompt_too_long)),
    ("training tokens", lambda f: f"{f.training_tokens:,}"),
    ("prompt tokens", lambda f: _dist(f.prompt_tokens)),
    ("prompt + completion tokens", lambda f: _dist(f.total_tokens)),
    ("duplicate rows", lambda f: str(f.duplicates)),
    ("empty input/completion", lambda f: str(f.empty_fields)),
]
