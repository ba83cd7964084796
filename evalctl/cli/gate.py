"""`evalctl gate`: decide in CI whether a candidate checkpoint may replace the baseline.

Owns the command and `run_gate_for_promotion` (what `evalctl promote` calls): reading the
spec's `gate:` section plus `--rule` options, resolving both references, running the
evaluations the rules need but the registry lacks (through `runners.evaluate`, unless
`--no-eval`), judging (`service.gate.rules`) and writing the reports
(`service.gate.report`). Exit codes: 0 pass, 1 regression, 2 error (bad rule, unknown
metric, unresolvable reference, no shared examples, missing evaluation with --no-eval).
Heavy imports stay inside functions so `evalctl --help` is fast.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

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


@dataclass
class GatePlan:
    """What one gate run compares: rules (with their sources) and the two references."""

    spec: Any
    rules: list[Any]
    sources: list[str]
    candidate: Any
    baseline: Any | None
    baseline_note: str | None = None
    evaluated: list[str] = field(default_factory=list)


def register(app: typer.Typer) -> None:
    """Add the `gate` command to the CLI."""
    app.command("gate", help=GATE_HELP)(gate)


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
    from evalctl.cli import _console, _registry
    from service.gate import report
    from service.spec_loader import SpecError

    started = time.perf_counter()
    console = _console()
    registry = _registry()
    try:
        plan = plan_gate(
            registry=registry,
            spec_path=spec,
            candidate=candidate,
            baseline=baseline,
            extra_rules=rule or [],
        )
    except SpecError as err:
        print(str(err), file=sys.stderr)
        raise typer.Exit(2) from None
    run_missing_evaluations(plan, registry, run=not no_eval, console=_stderr_console())
    result = judge(plan, registry)
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
        first = next(r for r in result.rules if r.verdict == "error")
        print(f"error: {first.source}: {first.reason}", file=sys.stderr)
        raise typer.Exit(2)
    if result.verdict == "fail":
        raise typer.Exit(1)


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _write(path: Path | None, text: str) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise EvalctlError(f"cannot write {path}: {exc.strerror or exc}") from None


def plan_gate(
    *,
    registry: Any,
    spec_path: Path,
    candidate: str,
    baseline: str | None,
    extra_rules: list[str],
) -> GatePlan:
    """Load the spec, gather and check the rules, and resolve both references."""
    from service.errors import NotFoundError
    from service.gate.refs import resolve_ref
    from service.gate.rule_spec import find_conflict, parse_rule
    from service.spec_loader import load_spec

    loaded = load_spec(spec_path)
    section = loaded.gate
    rules = list(section.rules) if section else []
    sources = [f"gate.rules.{i}" for i in range(len(rules))]
    for i, text in enumerate(extra_rules, start=1):
        rules.append(parse_rule(text, label=f"--rule {i}"))
        sources.append(f"--rule {i}")
    if not rules:
        raise EvalctlError(f"no gate rules: add a gate.rules section to {spec_path} or pass --rule")
    conflict = find_conflict(rules, sources)
    if conflict:
        raise EvalctlError(conflict)
    experiment = loaded.experiment_name
    cand = resolve_ref(registry, candidate, experiment=experiment)
    base_ref = baseline or (section.baseline if section else "@production")
    note = None
    try:
        base = resolve_ref(registry, base_ref, experiment=experiment)
    except NotFoundError as exc:
        if baseline is not None or not base_ref.startswith("@"):
            raise
        # The default alias does not exist before the first promotion: absolute rules
        # still apply, comparing ones are skipped.
        base, note = None, f"no baseline: {exc}"
    return GatePlan(loaded, rules, sources, cand, base, note)


def run_missing_evaluations(plan: GatePlan, registry: Any, *, run: bool, console: Any) -> None:
    """Run the evaluators the rules name that a side lacks (EvalctlError if `run` is False)."""
    from service.gate.rules import needs_baseline, unknown_metric_message
    from service.gate.sides import GateSide

    configured = dict(plan.spec.evaluator_configs())
    sides = [GateSide.load(registry, plan.candidate)]
    if plan.baseline is not None:
        sides.append(GateSide.load(registry, plan.baseline, role="baseline"))
    known_evaluators = set(configured)
    for side in sides:
        known_evaluators |= set(side.evaluations) | set(side.failed)
    todo: dict[int, list[str]] = {}
    for rule, source in zip(plan.rules, plan.sources, strict=True):
        for evaluator in rule.evaluators:
            if evaluator not in known_evaluators:
                options = sorted({m for s in sides for m in s.metrics()})
                options += [f"{name}.*" for name in configured]
                metric = next(m for m in rule.metrics if m.startswith(f"{evaluator}."))
                raise EvalctlError(unknown_metric_message(metric, source, options, sides))
            readers = sides if needs_baseline(rule) else sides[:1]
            for side in readers:
                if side.has_evaluator(evaluator) or evaluator not in configured:
                    continue
                wanted = todo.setdefault(side.ref.checkpoint.id, [])
                if evaluator not in wanted:
                    wanted.append(evaluator)
                if not run:
                    raise EvalctlError(
                        f"missing evaluation {evaluator} on {side.role} {side.label} for {source} "
                        "(run without --no-eval to evaluate it)"
                    )
    for checkpoint_id, names in todo.items():
        _evaluate(plan, registry, checkpoint_id, names, console)
        plan.evaluated += [f"{name}@ckpt:{checkpoint_id}" for name in names]


def _evaluate(
    plan: GatePlan, registry: Any, checkpoint_id: int, names: list[str], console: Any
) -> None:
    from evalctl.cli import _quiet_libraries
    from runners.evaluate import evaluate_recorded
    from service.settings import get_settings

    _quiet_libraries()
    console.print(f"evaluating checkpoint {checkpoint_id}: {', '.join(names)} (missing)")
    try:
        evaluate_recorded(
            registry=registry,
            settings=get_settings(),
            spec=plan.spec,
            checkpoint_ids=[checkpoint_id],
            evaluator_names=names,
            console=console,
        )
    except EvalctlError:
        raise
    except Exception as exc:
        if os.environ.get("EVALCTL_DEBUG"):
            raise
        from runners.run import failure_reason

        raise EvalctlError(
            f"evaluating checkpoint {checkpoint_id} failed: {failure_reason(exc)}"
        ) from None


def judge(plan: GatePlan, registry: Any) -> Any:
    """Return the GateResult of `plan` (evaluations are already in the registry)."""
    from service.gate.rules import evaluate_gate

    return evaluate_gate(
        registry=registry,
        rules=plan.rules,
        candidate=plan.candidate,
        baseline=plan.baseline,
        sources=plan.sources,
        baseline_note=plan.baseline_note,
    )


def run_gate_for_promotion(*, spec_path: Path, candidate: str) -> tuple[bool, dict[str, Any]]:
    """Gate `candidate` with the spec's rules against its baseline; return (passed, summary).

    Missing evaluations are run first. A spec without gate rules passes with a note.
    Raises EvalctlError for anything `evalctl gate` would exit 2 on.
    """
    from service.local import LocalRegistry
    from service.settings import get_settings
    from service.spec_loader import load_spec

    loaded = load_spec(spec_path)
    if loaded.gate is None or not loaded.gate.rules:
        return True, {"verdict": "pass", "rules": [], "summary": "spec has no gate rules"}
    registry = LocalRegistry(get_settings().db_url)
    plan = plan_gate(
        registry=registry, spec_path=spec_path, candidate=candidate, baseline=None, extra_rules=[]
    )
    run_missing_evaluations(plan, registry, run=True, console=_stderr_console())
    result = judge(plan, registry)
    if result.verdict == "error":
        first = next(r for r in result.rules if r.verdict == "error")
        raise EvalctlError(f"gate error in {first.source}: {first.reason}")
    return result.passed, result.to_json()
