"""`evalctl gate`: decide in CI whether a candidate checkpoint may replace the baseline.

Owns the command: reading `--rule` options and the report paths, printing the verdict
and writing the reports (`service.gate.report`); missing evaluations run here through
`evalctl.cli._common.evaluate_here`. Planning and judging are `service.promotion.gate`.
Exit codes: 0 pass, 1 regression, 2 error (bad rule, unknown metric, unresolvable
reference, no shared examples, missing evaluation with --no-eval). Heavy imports stay
inside functions so `evalctl --help` is fast.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from evalctl.cli._common import console as _console
from evalctl.cli._common import evaluate_here, stderr_console
from evalctl.cli._common import registry as _registry
from service.errors import EvalctlError

GATE_HELP = "\n\n".join(
    [
        "Judge a candidate checkpoint against a baseline with the spec's gate rules.",
        "REF forms: @ALIAS (e.g. @production), ckpt:ID, run:RUN, or a run id/name (its best "
        "checkpoint). The baseline defaults to the spec's gate.baseline (@production).",
        "Rules are the spec's gate.rules plus each --rule, written as YAML or JSON, e.g. "
        "--rule '{metric: json_schema.valid_rate, min: 0.9}'. Evaluations the rules need "
        "but the registry lacks are run first (unless --no-eval).",
        "Exit code: 0 pass, 1 regression, 2 error. With GITHUB_ACTIONS=true, failures are "
        "also printed as GitHub annotations.",
    ]
)


def gate(
    spec: Annotated[Path, typer.Option("--spec", help="The experiment spec (YAML).")],
    candidate: Annotated[str, typer.Option("--candidate", help="Checkpoint to judge (REF).")],
    baseline: Annotated[
        str | None, typer.Option("--baseline", help="Compare with REF (default: spec's).")
    ] = None,
    rule: Annotated[
        list[str] | None, typer.Option("--rule", help="An extra rule, YAML or JSON (repeatable).")
    ] = None,
    no_eval: Annotated[
        bool, typer.Option("--no-eval", help="Never run evaluations; missing ones are errors.")
    ] = False,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the result as JSON to PATH.")
    ] = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML to PATH.")] = None,
    markdown_path: Annotated[
        Path | None, typer.Option("--markdown", help="Write a Markdown report to PATH.")
    ] = None,
) -> None:
    """Judge a candidate checkpoint against a baseline with the spec's gate rules."""
    from service.gate import report
    from service.promotion import judge, missing_evaluations, plan_gate, run_missing
    from service.spec_loader import SpecError, load_spec

    started = time.perf_counter()
    console = _console()
    registry = _registry()
    try:
        plan = plan_gate(
            registry=registry,
            spec=load_spec(spec),
            candidate=candidate,
            baseline=baseline,
            extra_rules=rule or [],
            spec_label=str(spec),
        )
    except SpecError as err:
        print(str(err), file=sys.stderr)
        raise typer.Exit(2) from None
    missing = missing_evaluations(registry=registry, plan=plan, check_names=True)
    if missing and no_eval:
        first = missing[0]
        raise EvalctlError(
            f"missing evaluation {first.evaluator} on {first.side} for {first.source} "
            "(run without --no-eval to evaluate it)"
        )
    evaluate = evaluate_here(plan.spec, registry, stderr_console())
    run_missing(plan=plan, missing=missing, evaluate=evaluate)
    result = judge(registry=registry, plan=plan)
    duration = time.perf_counter() - started
    console.print(report.gate_table(result))
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    console.print(result.summary(), highlight=False)
    _write(json_path, json.dumps(result.to_json(), indent=2) + "\n")
    _write(junit, report.junit_xml(result, duration_s=duration))
    _write(markdown_path, report.markdown(result))
    if os.environ.get("GITHUB_ACTIONS") == "true":
        for line in report.github_annotations(result):
            print(line)
    if result.verdict == "error":
        first_error = next(r for r in result.rules if r.verdict == "error")
        print(f"error: {first_error.source}: {first_error.reason}", file=sys.stderr)
        raise typer.Exit(2)
    if result.verdict == "fail":
        raise typer.Exit(1)


def _write(path: Path | None, text: str) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise EvalctlError(f"cannot write {path}: {exc.strerror or exc}") from None
