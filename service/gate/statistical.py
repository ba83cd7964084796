"""Statistical gate rules: pair the two sides' examples and test for a significant drop.

Owns, for one `no_significant_drop` rule, which per-example values are compared and with
which test, and across all of them the Holm correction and the minimum-detectable-effect
warning. The test depends on the metric:

- a per-example score (`classification.correct`, `json_schema.valid`, `text_metrics.rouge1`):
  exact McNemar when every value is 0/1 and the margin is 0, else the paired t-test; when
  examples carry a `cluster` in their details, the cluster-robust paired t-test instead;
- a corpus statistic recomputed from per-example parts (`CORPUS_STATISTICS`; today
  `perplexity.ppl` = exp(sum nll*tokens / sum tokens) and `perplexity.nll`): the paired
  bootstrap over examples;
- any aggregate with `per_example: evaluator.key`: the paired bootstrap of that key's mean.

Corpus BLEU (`text_metrics.bleu`) records no per-example parts, so it cannot be tested here;
gate it with a threshold/relative rule or name a per-example basis (`text_metrics.chrf`).
The arithmetic is `service.gate.stats`'; this module only prepares aligned arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from service.gate import stats
from service.gate.rule_spec import StatisticalRule
from service.gate.sides import Examples, GateSide

MDE_FLOOR = 0.05  # default max_mde: margin + 5% of the baseline's value


@dataclass(frozen=True)
class CorpusStatistic:
    """A corpus metric recomputed from per-example components."""

    components: tuple[str, ...]  # per-example score keys read, in order
    # numpy arrays throughout; typed Any because `stats` declares Sequence parameters.
    rows: Callable[[Any], Any]  # (n, components) -> bootstrap rows
    statistic: Callable[[Any], float]  # rows -> corpus value


def _nll_rows(parts: NDArray[np.float64]) -> NDArray[np.float64]:
    # Per-example nll is a mean over the text's tokens; the corpus weighs texts by tokens.
    nll, tokens = parts[:, 0], parts[:, 1]
    return np.column_stack([np.where(tokens > 0, nll * tokens, 0.0), tokens])


def _mean_nll(rows: NDArray[np.float64]) -> Any:
    # Works on one (n, 2) array or a stack of resamples (k, n, 2): sums over examples.
    nll = rows[..., 0].sum(axis=-1)
    tokens = rows[..., 1].sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(tokens > 0, nll / np.where(tokens > 0, tokens, 1), np.inf)


CORPUS_STATISTICS: dict[str, CorpusStatistic] = {
    "perplexity.ppl": CorpusStatistic(
        ("nll", "tokens"), _nll_rows, lambda rows: np.exp(_mean_nll(rows))
    ),
    "perplexity.nll": CorpusStatistic(("nll", "tokens"), _nll_rows, _mean_nll),
}
NO_COMPONENTS = {"text_metrics.bleu": "text_metrics.chrf"}


class RuleProblem(Exception):
    """A statistical rule cannot be computed on this data (becomes an 'error' verdict)."""


@dataclass
class Paired:
    """Aligned per-example values of both sides, and optional cluster ids."""

    ids: list[str]
    baseline: Any  # (n, len(keys)) float array
    candidate: Any
    clusters: list[str | None] | None
    warnings: list[str]


def run_rule(
    rule: StatisticalRule, candidate: GateSide, baseline: GateSide
) -> tuple[stats.PairedResult, list[str]]:
    """Return the paired test of one rule and its warnings (RuleProblem if it cannot run)."""
    test = rule.no_significant_drop
    direction = rule.higher_better
    corpus = CORPUS_STATISTICS.get(rule.metric) if rule.per_example is None else None
    if corpus is not None:
        evaluator = rule.metric.partition(".")[0]
        paired = pair(candidate, baseline, evaluator, corpus.components)
        result = stats.paired_bootstrap(
            corpus.rows(paired.baseline),
            corpus.rows(paired.candidate),
            corpus.statistic,
            alpha=test.alpha,
            margin=test.margin,
            higher_is_better=direction,
            vectorized=True,
        )
        return result, paired.warnings
    basis = rule.per_example or rule.metric
    evaluator, _, key = basis.partition(".")
    _check_has_scores(rule, basis, candidate, baseline)
    paired = pair(candidate, baseline, evaluator, (key,))
    b: Any = paired.baseline[:, 0]
    c: Any = paired.candidate[:, 0]
    if rule.per_example is not None:
        result = stats.paired_bootstrap(
            b, c, _mean, alpha=test.alpha, margin=test.margin, higher_is_better=direction
        )
    elif paired.clusters is not None:
        result = stats.paired_mean_test(
            b,
            c,
            alpha=test.alpha,
            margin=test.margin,
            higher_is_better=direction,
            clusters=paired.clusters,
        )
    elif stats.choose_method(b, c) == "mcnemar_exact" and test.margin == 0:
        result = stats.mcnemar_test(b, c, alpha=test.alpha, higher_is_better=direction)
    else:
        result = stats.paired_mean_test(
            b, c, alpha=test.alpha, margin=test.margin, higher_is_better=direction
        )
    return result, paired.warnings


def _mean(rows: Any) -> float:
    return float(np.mean(rows))


def _check_has_scores(
    rule: StatisticalRule, basis: str, candidate: GateSide, baseline: GateSide
) -> None:
    evaluator, _, key = basis.partition(".")
    keys: set[str] = set()
    for side in (candidate, baseline):
        found = side.examples(evaluator)
        if found is not None:
            keys |= found.score_keys()
    if key in keys:
        return
    listed = ", ".join(f"{evaluator}.{k}" for k in sorted(keys)) or "none"
    if basis in NO_COMPONENTS:
        raise RuleProblem(
            f"{basis} is corpus-level and its examples record no per-example parts; gate it "
            f"with a threshold or relative rule, or add per_example: {NO_COMPONENTS[basis]}"
        )
    if rule.per_example is None:
        raise RuleProblem(
            f"{basis} has no per-example scores; name the per-example basis of this aggregate "
            f"with per_example: (per-example scores of {evaluator}: {listed})"
        )
    raise RuleProblem(f"per_example {basis} is not a per-example score (there are: {listed})")


def pair(candidate: GateSide, baseline: GateSide, evaluator: str, keys: Sequence[str]) -> Paired:
    """Return the values of `keys` on the examples both sides share (RuleProblem if none)."""
    cand, base = candidate.examples(evaluator), baseline.examples(evaluator)
    for side, found in ((candidate, cand), (baseline, base)):
        if found is None:
            raise RuleProblem(f"no {evaluator} evaluation on {side.role} {side.label}")
    assert cand is not None and base is not None
    shared = [i for i in base.by_id if i in cand.by_id and _has(base, i, keys)]
    shared = [i for i in shared if _has(cand, i, keys)]
    if not shared:
        raise RuleProblem(
            f"no shared examples: {evaluator} on baseline {baseline.label} "
            f"({len(base.by_id)} examples) and candidate {candidate.label} "
            f"({len(cand.by_id)}) have no example ids with {', '.join(keys)} in common"
        )
    if len(shared) < 2:
        raise RuleProblem(f"only {len(shared)} shared {evaluator} example; a test needs 2")
    warnings = []
    most = max(len(base.by_id), len(cand.by_id))
    if len(shared) < most:
        warnings.append(
            f"{evaluator}: paired on {len(shared)} shared examples of {most} "
            "(the sides' example ids differ)"
        )
    b = np.array([[base.by_id[i].scores[k] for k in keys] for i in shared], dtype=float)
    c = np.array([[cand.by_id[i].scores[k] for k in keys] for i in shared], dtype=float)
    clusters = _clusters(shared, cand, base, warnings)
    return Paired(shared, b, c, clusters, warnings)


def _has(examples: Examples, example_id: str, keys: Sequence[str]) -> bool:
    scores = examples.by_id[example_id].scores
    if keys and keys[0] == "nll":  # a text too short to score has tokens 0 and no nll
        return "tokens" in scores
    return all(k in scores for k in keys)


def _clusters(
    ids: list[str], cand: Examples, base: Examples, warnings: list[str]
) -> list[str | None] | None:
    found: list[str | None] = []
    for i in ids:
        value = cand.by_id[i].cluster or base.by_id[i].cluster
        found.append(None if value is None else str(value))
    distinct = {v for v in found if v is not None}
    if not distinct:
        return None
    if len(distinct) + found.count(None) < 2:
        warnings.append("examples carry a single cluster; tested them as independent")
        return None
    return found


def mde_warning(
    rule: StatisticalRule, result: stats.PairedResult, *, floor: float = MDE_FLOOR
) -> str | None:
    """Return the 'eval set too small' warning when the MDE exceeds what the rule must see."""
    if result.mde is None:
        return None
    test = rule.no_significant_drop
    limit = test.max_mde
    if limit is None:
        limit = test.margin + floor * abs(result.baseline)
    if result.mde <= limit:
        return None
    return (
        f"eval set too small to see a drop of {limit:.3g} in {rule.metric}: with "
        f"n={result.n} the smallest drop detectable (alpha {test.alpha:g}, 80% power) "
        f"is {result.mde:.3g}"
    )


def holm_groups(alphas: Sequence[float], p_values: Sequence[float], correct: bool) -> list[bool]:
    """Return which rules show a significant drop: Holm within rules sharing an alpha."""
    reject = [False] * len(p_values)
    for alpha in sorted(set(alphas)):
        members = [i for i, a in enumerate(alphas) if a == alpha]
        if correct:
            decided = stats.holm([p_values[i] for i in members], alpha)
        else:
            decided = [p_values[i] <= alpha for i in members]
        for i, flag in zip(members, decided, strict=True):
            reject[i] = flag
    return reject


def describe_method(result: stats.PairedResult) -> str:
    """Return e.g. 'mcnemar_exact (b=12, c=3)' or 'paired_t (df=1999)'."""
    detail: dict[str, Any] = result.detail
    if result.method == "mcnemar_exact":
        return f"mcnemar_exact (b={int(detail['b'])}, c={int(detail['c'])})"
    if result.method == "clustered_paired_t":
        return f"clustered_paired_t ({int(detail['n_clusters'])} clusters)"
    if result.method == "paired_bootstrap":
        return f"paired_bootstrap ({int(detail['n_resamples'])} resamples)"
    return f"{result.method} (df={int(detail.get('df', result.n - 1))})"
