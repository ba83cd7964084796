"""The compare page: 2 to 10 runs side by side, the first one as the baseline.

Owns `GET /compare?run=ID&run=NAME...` and turning what `dashboards.queries.compare`
loads into the page's tables: the parameters that differ (spec keys flattened to dotted
paths, plus lineage), each metric of the checkpoint a run stands for with its delta
against the baseline and the gate's paired test on the matching per-example score
(`service.gate.statistical.run_rule`: McNemar, paired t or paired bootstrap, exactly as
`evalctl gate` chooses), the training curves overlaid, and the examples each candidate
got worse than the baseline. The statistics are the gate's; nothing here re-derives them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Query, Request, Response
from sqlmodel import Session

from dashboards.curves import load_series
from dashboards.queries import compare as queries
from dashboards.queries.compare import Compared
from dashboards.session import ViewerDep
from dashboards.web import fmt_num, page_router, render
from service.compare import flatten, flatten_spec
from service.gate.rule_spec import DropTest, StatisticalRule, lower_is_better
from service.gate.sides import GateSide
from service.spec_loader import SpecError

logger = logging.getLogger("evalctl.dashboard")
router = page_router()

CURVE_KEYS = ("loss", "eval_loss", "learning_rate")
ALPHA = 0.05
WORST_SHOWN = 50
TEXT_LIMIT = 2000
# Aggregates whose per-example basis has another name; others match by name or "_rate".
BASIS = {"valid_rate": "valid", "parse_rate": "parsed", "accuracy": "correct", "ppl": "nll"}
# Per-example weights, not scores: testing them says nothing.
NOT_SCORES = {"tokens"}


@router.get("/compare")
def compare_page(
    request: Request,
    viewer: ViewerDep,
    run: Annotated[list[str] | None, Query()] = None,
    baseline: str | None = None,
) -> Response:
    """Compare runs: parameters, metrics with paired tests, curves, examples that got worse."""
    refs = queries.check_refs(run or [])
    state = request.app.state
    with Session(state.engine) as session:
        runs = queries.load_compared(
            session=session, db_url=state.db_url, refs=refs, baseline=baseline or None
        )
        worse = worse_examples(session, runs)
    tests = paired_tests(runs)
    params, differing = params_table(runs)
    context = {
        "runs": runs,
        "candidates": runs[1:],
        "params": params,
        "differing": differing,
        "metrics": metrics_table(runs, tests),
        "tests": [t for per_run in tests for t in per_run.values()],
        **curve_charts(state.settings.tracking_uri, runs),
        "worse": worse,
        "alpha": ALPHA,
    }
    return render(request, "compare.html", context)


# --- parameters ----------------------------------------------------------------------


@dataclass
class ParamRow:
    """One parameter: its value in each run, and whether they all agree."""

    name: str
    values: list[str]
    same: bool


def _params_of(run: Any) -> dict[str, Any]:
    # The loader's limits: a stored alias bomb becomes one line here, not a stalled page.
    try:
        params = flatten_spec(run.spec_text or "", source=f"run {run.id} spec")
    except SpecError as err:
        params = {"(spec)": f"(spec not shown: {err.problems[0].message})"}
    params.update(flatten({"base_model_hash": run.base_model_hash, "git_sha": run.git_sha}))
    params.update(flatten({"dataset_hashes": run.dataset_hashes or {}, "tags": run.tags or {}}))
    return params


def _shown(value: Any, present: bool) -> str:
    if not present:
        return "–"
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def params_table(runs: list[Compared]) -> tuple[list[ParamRow], int]:
    """Return one row per parameter any run has (spec order, then lineage) and how many differ."""
    per_run = [_params_of(c.run) for c in runs]
    names: dict[str, None] = {}
    for params in per_run:
        names.update(dict.fromkeys(params))
    rows = []
    for name in names:
        present = [name in params for params in per_run]
        values = [params.get(name) for params in per_run]
        same = all(present) and all(v == values[0] for v in values)
        shown = [_shown(v, p) for v, p in zip(values, present, strict=True)]
        rows.append(ParamRow(name, shown, same))
    return rows, sum(1 for r in rows if not r.same)


# --- metrics and the gate's paired tests ----------------------------------------------


@dataclass
class PairedTest:
    """The gate's paired test of one per-example score, candidate vs baseline."""

    metric: str  # evaluator.key of the per-example score
    candidate: str  # the candidate run's name
    method: str = ""
    n: int = 0
    delta: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    direction: str = ""  # "worse" or "better": which one-sided test the p-value is for
    problem: str | None = None  # why there is no test

    @property
    def significant(self) -> bool:
        """Return whether the change is significant at ALPHA (one-sided, uncorrected)."""
        return self.p_value is not None and self.p_value < ALPHA


def _test(metric: str, candidate: GateSide, baseline: GateSide, name: str) -> PairedTest:
    # Imported here: the gate's statistics pull in SciPy (~0.35 s), which the service's
    # start-up (and every other page) does not need.
    from service.gate import statistical

    out = PairedTest(metric=metric, candidate=name)
    rule = StatisticalRule(metric=metric, no_significant_drop=DropTest(alpha=ALPHA))
    try:
        result, _ = statistical.run_rule(rule, candidate, baseline)
        out.direction = "worse"
        gained = result.delta > 0 if rule.higher_better else result.delta < 0
        if gained:  # the gate only tests for a drop; ask the mirrored question instead
            mirrored = rule.model_copy(update={"higher_is_better": not rule.higher_better})
            result, _ = statistical.run_rule(mirrored, candidate, baseline)
            out.direction = "better"
    except (statistical.RuleProblem, ValueError) as exc:
        out.problem = str(exc)
        return out
    out.method = statistical.describe_method(result)
    out.n, out.delta, out.p_value = result.n, result.delta, result.p_value
    out.ci_low, out.ci_high = result.ci_low, result.ci_high
    return out


def paired_tests(runs: list[Compared]) -> list[dict[str, PairedTest]]:
    """Return, per candidate, the paired test of every per-example score both sides share."""
    baseline = runs[0].side
    out: list[dict[str, PairedTest]] = []
    for compared in runs[1:]:
        found: dict[str, PairedTest] = {}
        out.append(found)
        if baseline is None or compared.side is None:
            continue
        for evaluator in sorted(set(baseline.evaluations) & set(compared.side.evaluations)):
            keys = _score_keys(baseline, evaluator) & _score_keys(compared.side, evaluator)
            for key in sorted(keys - NOT_SCORES):
                metric = f"{evaluator}.{key}"
                found[metric] = _test(metric, compared.side, baseline, compared.run.name)
    return out


def _score_keys(side: GateSide, evaluator: str) -> set[str]:
    examples = side.examples(evaluator)
    return examples.score_keys() if examples is not None else set()


def basis_of(metric: str, tests: dict[str, PairedTest]) -> PairedTest | None:
    """Return the test of the per-example score behind an aggregate (valid_rate -> valid)."""
    evaluator, _, key = metric.partition(".")
    for name in (BASIS.get(key), key, key.removesuffix("_rate")):
        if name and f"{evaluator}.{name}" in tests:
            return tests[f"{evaluator}.{name}"]
    return None


@dataclass
class Delta:
    """A candidate's change against the baseline, with its direction in words."""

    value: float | None
    css: str = ""
    cue: str = ""


def delta_of(metric: str, baseline: float | None, candidate: float | None) -> Delta:
    """Return candidate - baseline, marked better or worse by the metric's direction."""
    if baseline is None or candidate is None:
        return Delta(None)
    value = candidate - baseline
    if value == 0:
        return Delta(value, "", "= same")
    better = value < 0 if lower_is_better(metric) else value > 0
    return Delta(value, "better", "▲ better") if better else Delta(value, "worse", "▼ worse")


@dataclass
class MetricRow:
    """One metric: each run's value, each candidate's delta and significance."""

    name: str
    values: list[float | None]
    deltas: list[Delta] = field(default_factory=list)
    tests: list[PairedTest | None] = field(default_factory=list)


def metrics_table(runs: list[Compared], tests: list[dict[str, PairedTest]]) -> list[MetricRow]:
    """Return one row per metric any run's checkpoint has, checkpoint losses first."""
    tables = [c.side.metrics() if c.side is not None else {} for c in runs]
    names = sorted({n for t in tables for n in t}, key=lambda n: ("." in n, n))
    rows = []
    for name in names:
        values = [t.get(name) for t in tables]
        row = MetricRow(name, values)
        for i, per_run in enumerate(tests, start=1):
            row.deltas.append(delta_of(name, values[0], values[i]))
            row.tests.append(basis_of(name, per_run))
        rows.append(row)
    return rows


# --- curves ----------------------------------------------------------------------------


def curve_charts(tracking_uri: str, runs: list[Compared]) -> dict[str, Any]:
    """Return `charts` (one per curve key, a series per run) and `curves_error` (or None)."""
    labels = _labels(runs)
    by_mlflow = {c.run.mlflow_run_id: labels[i] for i, c in enumerate(runs) if c.run.mlflow_run_id}
    try:
        series = load_series(tracking_uri, list(by_mlflow), CURVE_KEYS)
    except Exception as exc:  # MLflow is another system: say why, keep the page
        logger.warning("cannot read curves from MLflow at %s: %s", tracking_uri, exc)
        return {"charts": [], "curves_error": f"Could not read the curves from MLflow: {exc}"}
    charts = []
    for key in CURVE_KEYS:
        mine = [s for s in series if s.key == key]
        spec = {
            "title": key,
            "x_label": "step",
            "y_label": key,
            "series": [{"label": by_mlflow[s.run_id], "x": s.x, "y": s.y} for s in mine],
        }
        summary = ", ".join(f"{by_mlflow[s.run_id]}: {s.points} points" for s in mine)
        charts.append({"id": f"curve-{key}", "key": key, "spec": spec, "summary": summary})
    return {"charts": charts, "curves_error": None}


def _labels(runs: list[Compared]) -> list[str]:
    names = [c.run.name for c in runs]
    return [
        c.run.name if names.count(c.run.name) == 1 else f"{c.run.name} (#{c.run.id})" for c in runs
    ]


# --- examples that got worse -------------------------------------------------------------


@dataclass
class WorseExample:
    """One example a candidate got worse than the baseline, with both sides' texts."""

    example_id: str
    changes: list[str]
    severity: float
    position: int
    input: str = ""
    baseline_output: str = ""
    candidate_output: str = ""
    reference: str = ""


@dataclass
class WorseGroup:
    """The examples one candidate got worse on one evaluator."""

    candidate: str
    evaluator: str
    baseline_evaluation: int
    candidate_evaluation: int
    total: int
    examples: list[WorseExample]


def worse_examples(session: Session, runs: list[Compared]) -> list[WorseGroup]:
    """Return, per candidate and evaluator, the (at most 50) worst regressions, with texts."""
    baseline = runs[0].side
    groups: list[WorseGroup] = []
    if baseline is None:
        return groups
    for compared in runs[1:]:
        side = compared.side
        if side is None:
            continue
        for evaluator in sorted(set(baseline.evaluations) & set(side.evaluations)):
            base, cand = baseline.examples(evaluator), side.examples(evaluator)
            if base is None or cand is None or not base.by_id or not cand.by_id:
                continue
            found = []
            for position, (example_id, row) in enumerate(cand.by_id.items()):
                before = base.by_id.get(example_id)
                if before is None:
                    continue
                changes, severity = regression(evaluator, before.scores, row.scores)
                if changes:
                    found.append(WorseExample(example_id, changes, severity, position))
            found.sort(key=lambda e: (-e.severity, e.position))
            groups.append(
                WorseGroup(
                    candidate=compared.run.name,
                    evaluator=evaluator,
                    baseline_evaluation=baseline.evaluations[evaluator].id,
                    candidate_evaluation=side.evaluations[evaluator].id,
                    total=len(found),
                    examples=found[:WORST_SHOWN],
                )
            )
    _fill_texts(session, groups)
    return groups


def regression(
    evaluator: str, before: dict[str, float], after: dict[str, float]
) -> tuple[list[str], float]:
    """Return the scores that got worse ('valid: 1 → 0') and how much, by evaluator kind."""
    shared = [k for k in after if k in before and k not in NOT_SCORES]
    changes: list[str] = []
    severity = 0.0
    for key in shared:
        b, c = float(before[key]), float(after[key])
        if evaluator == "json_schema":
            worse = key in ("valid", "exact_match") and b == 1.0 and c == 0.0
        elif evaluator == "classification":
            worse = key == "correct" and b == 1.0 and c == 0.0
        elif evaluator == "llama_guard":
            worse = key.endswith("unsafe") and not key.endswith("p_unsafe") and b == 0 and c == 1
        elif evaluator == "perplexity":
            worse = key == "nll" and b > 0 and c > b * 1.1
        else:
            worse = c > b if lower_is_better(f"{evaluator}.{key}") else c < b
        if worse:
            changes.append(f"{key}: {fmt_num(b)} → {fmt_num(c)}")
            severity = max(severity, abs(c - b) / (abs(b) or 1.0))
    return changes, severity


def _fill_texts(session: Session, groups: list[WorseGroup]) -> None:
    """Load the details of the shown examples only: one query per evaluation."""
    wanted: dict[int, set[str]] = {}
    for group in groups:
        ids = {e.example_id for e in group.examples}
        wanted.setdefault(group.baseline_evaluation, set()).update(ids)
        wanted.setdefault(group.candidate_evaluation, set()).update(ids)
    details = {
        evaluation: queries.example_details(
            session=session, evaluation_id=evaluation, example_ids=ids
        )
        for evaluation, ids in wanted.items()
        if ids
    }
    for group in groups:
        base = details.get(group.baseline_evaluation, {})
        cand = details.get(group.candidate_evaluation, {})
        for example in group.examples:
            before, after = base.get(example.example_id, {}), cand.get(example.example_id, {})
            example.input = _text(after, before, keys=("input", "prompt", "text"))
            example.baseline_output = _text(before, keys=("output", "response", "predicted"))
            example.candidate_output = _text(after, keys=("output", "response", "predicted"))
            example.reference = _text(after, before, keys=("reference", "gold"))


def _text(*sources: dict[str, Any], keys: tuple[str, ...]) -> str:
    for source in sources:
        for key in keys:
            value = source.get(key)
            if value is not None:
                text = value if isinstance(value, str) else json.dumps(value, default=str)
                return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT] + "…"
    return ""
