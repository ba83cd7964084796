"""Reports of a gate result for people and CI systems.

Owns four views of one `GateResult`: a rich table for the terminal, JUnit XML (one
testcase per rule; a `failure` for a regression, an `error` for a rule that could not be
computed, `skipped` for a rule without a baseline), Markdown for a PR/MR comment (table,
summary line, warnings), and GitHub Actions workflow commands (`::error ...::`,
`::warning ...::`). It computes nothing and reads no registry.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any

from service.gate.rules import GateResult, RuleResult

_MARK = {"pass": "pass", "fail": "FAIL", "error": "ERROR", "skip": "skip"}
_STYLE = {"pass": "green", "fail": "bold red", "error": "bold red", "skip": "yellow"}
_EMOJI = {"pass": "✅", "fail": "❌", "error": "⚠️", "skip": "⏭️"}


def num(value: float | None, signed: bool = False) -> str:
    """Format a number for a report cell ('-' when missing)."""
    if value is None:
        return "-"
    if math.isnan(value) or math.isinf(value):
        return str(value)
    text = f"{value:+.4g}" if signed else f"{value:.4g}"
    return text


def interval(rule: RuleResult) -> str:
    """Return '[lo, hi]' for statistical rules, '-' otherwise."""
    if rule.ci_low is None or rule.ci_high is None:
        return "-"
    return f"[{num(rule.ci_low, True)}, {num(rule.ci_high, True)}]"


def _test_cell(rule: RuleResult) -> str:
    if rule.p_value is None:
        return "-"
    return f"p={rule.p_value:.2g}" + (f", n={rule.n}" if rule.n is not None else "")


def gate_table(result: GateResult) -> Any:
    """Return the rich table printed by `evalctl gate`."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"gate: {result.candidate} vs {result.baseline or '(no baseline)'}")
    for column in ("rule", "baseline", "candidate", "delta", "interval", "test", "verdict"):
        table.add_column(column, justify="left" if column in ("rule", "verdict") else "right")
    for rule in result.rules:
        verdict = f"[{_STYLE[rule.verdict]}]{_MARK[rule.verdict]}[/]"
        if rule.verdict != "pass":
            verdict += f" {escape(rule.reason)}"
        table.add_row(
            escape(f"{rule.source}: {rule.name}"),
            num(rule.baseline),
            num(rule.candidate),
            num(rule.delta, True),
            interval(rule),
            _test_cell(rule),
            verdict,
        )
    return table


def junit_xml(result: GateResult, *, duration_s: float = 0.0) -> str:
    """Return JUnit XML: one testsuite, one testcase per rule (failure/error/skipped)."""
    counts = result.counts()
    attrs = {
        "name": "evalctl gate",
        "tests": str(len(result.rules)),
        "failures": str(counts["fail"]),
        "errors": str(counts["error"]),
        "skipped": str(counts["skip"]),
        "time": f"{duration_s:.3f}",
    }
    root = ET.Element("testsuites", attrs)
    suite = ET.SubElement(
        root,
        "testsuite",
        {
            **attrs,
            "name": f"evalctl gate: {result.candidate} vs {result.baseline or 'no baseline'}",
            "timestamp": datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
        },
    )
    props = ET.SubElement(suite, "properties")
    for name, value in (
        ("candidate", result.candidate),
        ("baseline", result.baseline or ""),
        ("verdict", result.verdict),
        ("correction", result.correction),
    ):
        ET.SubElement(props, "property", {"name": name, "value": value})
    for rule in result.rules:
        case = ET.SubElement(
            suite,
            "testcase",
            {"classname": f"evalctl.gate.{rule.kind}", "name": f"{rule.source}: {rule.name}"},
        )
        case.set("time", "0")
        if rule.verdict == "fail":
            ET.SubElement(
                case, "failure", {"message": rule.reason, "type": "regression"}
            ).text = _details(rule)
        elif rule.verdict == "error":
            ET.SubElement(
                case, "error", {"message": rule.reason, "type": "gate_error"}
            ).text = _details(rule)
        elif rule.verdict == "skip":
            ET.SubElement(case, "skipped", {"message": rule.reason})
        ET.SubElement(case, "system-out").text = _details(rule)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _details(rule: RuleResult) -> str:
    lines = [
        f"metric: {rule.metric}",
        f"baseline: {num(rule.baseline)}",
        f"candidate: {num(rule.candidate)}",
        f"delta: {num(rule.delta, True)}",
    ]
    if rule.p_value is not None:
        lines += [
            f"interval: {interval(rule)}",
            f"p_value: {rule.p_value:.4g}",
            f"mde: {num(rule.mde)}",
            f"n: {rule.n}",
            f"method: {rule.method}",
        ]
    lines.append(f"verdict: {rule.verdict}: {rule.reason}")
    lines += [f"warning: {w}" for w in rule.warnings]
    return "\n".join(lines)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(result: GateResult) -> str:
    """Return a Markdown report for a PR/MR comment: heading, table, summary, warnings."""
    head = {"pass": "✅ passed", "fail": "❌ regression", "error": "⚠️ error"}[result.verdict]
    lines = [
        f"### evalctl gate: {head}",
        "",
        f"Candidate `{result.candidate}` vs baseline `{result.baseline or 'none'}`.",
        "",
        "| | Rule | Baseline | Candidate | Δ | Interval | p | Result |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for rule in result.rules:
        p = f"{rule.p_value:.2g}" if rule.p_value is not None else "-"
        lines.append(
            f"| {_EMOJI[rule.verdict]} | `{_md(rule.source)}` {_md(rule.name)} "
            f"| {num(rule.baseline)} | {num(rule.candidate)} | {num(rule.delta, True)} "
            f"| {interval(rule)} | {p} | {_md(rule.reason)} |"
        )
    lines += ["", f"**{_md(result.summary())}**"]
    if result.warnings:
        lines += ["", *(f"> ⚠️ {_md(w)}" for w in result.warnings)]
    return "\n".join(lines) + "\n"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotations(result: GateResult) -> list[str]:
    """Return GitHub Actions workflow commands: an error per failed rule, warnings."""
    lines = []
    for rule in result.rules:
        if rule.verdict in ("fail", "error"):
            what = "regression" if rule.verdict == "fail" else "error"
            title = _escape_property(f"evalctl gate {what}: {rule.source} {rule.name}")
            lines.append(f"::error title={title}::{_escape_data(rule.reason)}")
    for warning in result.warnings:
        title = _escape_property("evalctl gate")
        lines.append(f"::warning title={title}::{_escape_data(warning)}")
    return lines
