"""Comparing runs: params side by side and metrics with deltas and paired tests.

Owns flattening each run's spec into dotted params, collecting each checkpoint's metrics
(every `evaluator.metric` plus eval_loss), deltas against the first checkpoint, and the
paired significance test on per-example scores shared by both checkpoints (through
`service.gate.stats`). Used by `evalctl compare` (which renders it with rich) and the
dashboard's compare page. It reads through the `Registry` interface, does not resolve
refs and renders nothing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from service.gate.rule_spec import lower_is_better
from service.models import CheckpointPublic, EvaluationPublic
from service.registry import Registry


def flatten_spec(spec_text: str, *, source: str = "spec") -> dict[str, Any]:
    """Flatten a stored spec into dotted keys (lists by index: evaluators.0.perplexity.data).

    The text is parsed with the spec loader's limits (alias expansion, size), so a stored
    "billion laughs" spec raises `SpecError` naming `source` instead of stalling.
    """
    from service.spec_loader import parse_spec_text

    if not spec_text.strip():
        return {}
    return flatten(parse_spec_text(spec_text, source))


def flatten(value: Any, prefix: str = "", *, lists: bool = True) -> dict[str, Any]:
    """Flatten nested mappings and lists into dotted keys (`training.lora.r`).

    Lists go by index (`evaluators.0.perplexity.data`); with `lists=False` a list stays one
    value, as MLflow params keep it (`training.lora.target_modules`, see `runners.run`).
    """
    out: dict[str, Any] = {}

    def walk(item: Any, path: str) -> None:
        if isinstance(item, dict) and item:
            for key, child in item.items():
                walk(child, f"{path}.{key}" if path else str(key))
        elif lists and isinstance(item, list) and item:
            for index, child in enumerate(item):
                walk(child, f"{path}.{index}" if path else str(index))
        else:
            out[path] = item

    walk(value, prefix)
    return out


def compare_params(
    spec_texts: Sequence[str], *, all_params: bool, sources: Sequence[str] | None = None
) -> dict[str, list[Any]]:
    """Return param -> one value per ref (None where missing); only differences by default.

    `sources` names each spec in errors (e.g. "run 3 spec"); a spec that cannot be parsed
    raises `SpecError`.
    """
    names = sources or [f"spec {i + 1}" for i in range(len(spec_texts))]
    flat = [flatten_spec(text, source=name) for text, name in zip(spec_texts, names, strict=True)]
    keys = sorted({key for params in flat for key in params})
    table = {key: [params.get(key) for params in flat] for key in keys}
    if all_params:
        return table
    return {key: values for key, values in table.items() if _differ(values)}


def compare_metrics(
    registry: Registry, checkpoints: Sequence[CheckpointPublic]
) -> list[dict[str, Any]]:
    """Return one row per metric: values per ref, deltas and paired tests vs the first ref."""
    evaluations = [_latest_evaluations(registry, c) for c in checkpoints]
    values = [_metric_values(c, evals) for c, evals in zip(checkpoints, evaluations, strict=True)]
    names = sorted({name for row in values for name in row})
    examples: dict[int, dict[str, dict[str, float]]] = {}
    rows = []
    for name in names:
        higher = not lower_is_better(name)
        row_values = [row.get(name) for row in values]
        base = row_values[0]
        deltas = [
            None if i == 0 or v is None or base is None else v - base
            for i, v in enumerate(row_values)
        ]
        tests: list[dict[str, Any] | None] = [None]
        for i in range(1, len(checkpoints)):
            tests.append(_paired(registry, evaluations, name, i, higher, examples))
        rows.append(
            {
                "metric": name,
                "higher_is_better": higher,
                "values": [_finite(v) for v in row_values],
                "deltas": [_finite(d) for d in deltas],
                "tests": tests,
            }
        )
    return rows


def _latest_evaluations(registry: Registry, checkpoint: CheckpointPublic) -> list[EvaluationPublic]:
    """Return the newest succeeded evaluation per evaluator of a checkpoint."""
    latest: dict[str, EvaluationPublic] = {}
    for evaluation in registry.list_evaluations(checkpoint_id=checkpoint.id):
        if not evaluation.error:
            latest[evaluation.evaluator] = evaluation  # listed oldest first
    return list(latest.values())


def _metric_values(
    checkpoint: CheckpointPublic, evaluations: list[EvaluationPublic]
) -> dict[str, float]:
    values = {f"{e.evaluator}.{k}": float(v) for e in evaluations for k, v in e.metrics.items()}
    if checkpoint.eval_loss is not None:
        values["eval_loss"] = float(checkpoint.eval_loss)
    return values


def _paired(
    registry: Registry,
    evaluations: list[list[EvaluationPublic]],
    metric: str,
    index: int,
    higher: bool,
    cache: dict[int, dict[str, dict[str, float]]],
) -> dict[str, Any] | None:
    """Return the paired test of `metric` for ref `index` vs ref 0, if both have scores."""
    evaluator, _, key = metric.partition(".")
    if not key:
        return None
    first, other = _find(evaluations[0], evaluator), _find(evaluations[index], evaluator)
    if first is None or other is None:
        return None
    base, cand = _scores(registry, first.id, cache), _scores(registry, other.id, cache)
    shared = [x for x in base if x in cand and key in base[x] and key in cand[x]]
    if len(shared) < 2:
        return None
    b = [base[x][key] for x in shared]
    c = [cand[x][key] for x in shared]
    return paired_test(b, c, higher_is_better=higher)


def paired_test(
    baseline: Sequence[float], candidate: Sequence[float], *, higher_is_better: bool
) -> dict[str, Any] | None:
    """Run the paired test `service.gate.stats` picks; p is two-sided (None if untestable)."""
    from service.gate.stats import choose_method, mcnemar_test, paired_mean_test

    method = choose_method(baseline, candidate)
    test = mcnemar_test if method == "mcnemar_exact" else paired_mean_test
    try:
        worse = test(baseline, candidate, higher_is_better=higher_is_better)
        better = test(baseline, candidate, higher_is_better=not higher_is_better)
    except ValueError:
        return None
    # Each call is one-sided ("worse" vs "better"); two-sided p is twice the smaller one.
    p_values = [p for p in (worse.p_value, better.p_value) if math.isfinite(p)]
    return {
        "method": worse.method,
        "n": worse.n,
        "baseline": _finite(worse.baseline),
        "candidate": _finite(worse.candidate),
        "delta": _finite(worse.delta),
        "ci_low": _finite(worse.ci_low),
        "ci_high": _finite(worse.ci_high),
        "p_value": min(1.0, 2 * min(p_values)) if p_values else None,
        "p_worse": _finite(worse.p_value),
    }


def _find(evaluations: list[EvaluationPublic], evaluator: str) -> EvaluationPublic | None:
    return next((e for e in evaluations if e.evaluator == evaluator), None)


def _scores(
    registry: Registry, evaluation_id: int, cache: dict[int, dict[str, dict[str, float]]]
) -> dict[str, dict[str, float]]:
    if evaluation_id not in cache:
        page = registry.list_examples(evaluation_id=evaluation_id)
        cache[evaluation_id] = {x.example_id: x.scores for x in page.data}
    return cache[evaluation_id]


def _differ(values: list[Any]) -> bool:
    return len({json.dumps(v, sort_keys=True, default=str) for v in values}) > 1


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None
