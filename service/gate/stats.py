"""Paired statistics for the CI gate: is the candidate significantly worse than the baseline?

Owns the tests that compare a candidate with a baseline scored on the same examples: the
paired t-test (optionally with cluster-robust standard errors), the exact McNemar test for
0/1 outcomes, a paired bootstrap for corpus-level metrics, Holm-Bonferroni correction across
rules, and the minimum detectable effect. Every test is one-sided with H0 "the candidate is
not worse than the baseline by more than `margin`" against H1 "it is worse", so a small
p-value means a significant drop and the gate should fail. `delta` and the interval are in
the metric's own units (candidate - baseline); "worse" is lower when `higher_is_better`,
higher otherwise; `margin` is a non-negative tolerated drop in metric units. It does not own
which rule uses which test, thresholds, loading scores or reporting (`service.gate.rules`
and `service.gate.report` do); it only sees aligned arrays of per-example values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import special  # scipy.stats costs ~0.5 s more to import; the gate is a CLI

DEFAULT_POWER = 0.8


@dataclass(frozen=True)
class PairedResult:
    """The outcome of one paired comparison of a candidate with a baseline."""

    method: str  # "paired_t" | "clustered_paired_t" | "mcnemar_exact" | "paired_bootstrap"
    n: int  # paired examples used
    baseline: float  # baseline statistic (mean, or corpus statistic)
    candidate: float  # candidate statistic
    delta: float  # candidate - baseline, in the metric's own units
    se: float | None  # standard error of delta (None for exact McNemar)
    ci_low: float  # two-sided (1 - 2*alpha) interval for delta: the two one-sided alpha bounds
    ci_high: float
    p_value: float  # one-sided p for H0 "not worse by more than margin" vs H1 "worse"
    mde: float | None  # smallest drop detectable at this n, alpha and power 0.8, metric units
    detail: dict[str, float]  # method specifics: df, t, b, c, n_clusters, n_resamples


def paired_mean_test(
    baseline: Sequence[float],
    candidate: Sequence[float],
    *,
    alpha: float = 0.05,
    margin: float = 0.0,
    higher_is_better: bool = True,
    clusters: Sequence[str | int | None] | None = None,
) -> PairedResult:
    """Test whether the candidate's mean is worse than the baseline's by more than `margin`.

    Without `clusters` this is the one-sided paired t-test (df = n - 1). With `clusters`
    (one id per example; `None` makes an example its own cluster) the standard error comes
    from cluster sums with the CR1 factor G/(G-1) and df = G - 1, for examples that share a
    source document, prompt template or conversation. Zero variance gives p = 0 when the
    observed drop exceeds the margin, else p = 1.

    Raises:
        ValueError: on mismatched lengths, fewer than 2 pairs (or 2 clusters), non-finite
            values, alpha outside (0, 0.5) or a negative margin.
    """
    b, c = _paired_arrays(baseline, candidate)
    _check_alpha_margin(alpha, margin)
    n = b.size
    if n < 2:
        raise ValueError(f"paired_mean_test needs at least 2 paired examples, got {n}")
    # Oriented so that positive = candidate better, whatever the metric's direction.
    d = (c - b) if higher_is_better else (b - c)
    mean_d = float(d.mean())
    detail: dict[str, float] = {}
    if clusters is None:
        method = "paired_t"
        se = float(d.std(ddof=1) / np.sqrt(n))
        df = n - 1
    else:
        method = "clustered_paired_t"
        se, n_clusters = _clustered_se(d, clusters)
        df = n_clusters - 1
        detail["n_clusters"] = float(n_clusters)
    p_value, t_stat = _t_p_value(mean_d + margin, se, df)
    q = float(special.stdtrit(df, 1.0 - alpha))
    delta = float(c.mean() - b.mean())
    detail.update(df=float(df), t=t_stat)
    return PairedResult(
        method=method,
        n=n,
        baseline=float(b.mean()),
        candidate=float(c.mean()),
        delta=delta,
        se=se,
        ci_low=delta - q * se,
        ci_high=delta + q * se,
        p_value=p_value,
        mde=minimum_detectable_effect(se, alpha),
        detail=detail,
    )


def mcnemar_test(
    baseline: Sequence[float],
    candidate: Sequence[float],
    *,
    alpha: float = 0.05,
    margin: float = 0.0,
    higher_is_better: bool = True,
) -> PairedResult:
    """Test a 0/1 metric for a drop with the exact one-sided McNemar (binomial) test.

    b counts pairs where the baseline has the better outcome and the candidate the worse
    one (with `higher_is_better`, baseline 1 and candidate 0); c the reverse. p is
    P(Binom(b + c, 1/2) >= b). The interval is conditional on the b + c discordant pairs:
    the Clopper-Pearson interval for b / (b + c) mapped to delta, so `ci` excludes the
    no-change value exactly when p < alpha. `mde` uses the normal-approximation standard
    error of the paired difference (the paired t's), as the exact test has none.

    Raises:
        ValueError: on mismatched lengths, fewer than 2 pairs, values other than 0 and 1,
            alpha outside (0, 0.5), or a non-zero margin (the conditional exact test has no
            non-inferiority form; use `paired_mean_test` with a margin instead).
    """
    base, cand = _paired_arrays(baseline, candidate)
    _check_alpha_margin(alpha, margin)
    if margin != 0.0:
        raise ValueError(
            f"mcnemar_test supports margin=0 only, got {margin}; "
            "use paired_mean_test for a non-inferiority margin"
        )
    n = base.size
    if n < 2:
        raise ValueError(f"mcnemar_test needs at least 2 paired examples, got {n}")
    for side, values in (("baseline", base), ("candidate", cand)):
        bad = values[(values != 0.0) & (values != 1.0)]
        if bad.size:
            raise ValueError(
                f"mcnemar_test needs 0/1 outcomes; {side} has {bad.size} other value(s), "
                f"e.g. {bad[0]!r}"
            )
    good_base, good_cand = (base, cand) if higher_is_better else (1.0 - base, 1.0 - cand)
    b = int(np.sum((good_base == 1.0) & (good_cand == 0.0)))
    c = int(np.sum((good_base == 0.0) & (good_cand == 1.0)))
    delta = float(cand.mean() - base.mean())
    discordant = b + c
    if discordant == 0:
        p_value, lo, hi = 1.0, 0.0, 0.0
    else:
        # P(Binom(b + c, 1/2) >= b): the exact one-sided McNemar test.
        p_value = float(special.bdtrc(b - 1, discordant, 0.5)) if b > 0 else 1.0
        share_low, share_high = _clopper_pearson(b, discordant, 1.0 - 2.0 * alpha)
        # improvement = (c - b) / n = (b + c) / n * (1 - 2 * share_b)
        scale = discordant / n
        lo, hi = scale * (1.0 - 2.0 * share_high), scale * (1.0 - 2.0 * share_low)
        if not higher_is_better:
            lo, hi = -hi, -lo
    d = good_cand - good_base
    se_normal = float(d.std(ddof=1) / np.sqrt(n))
    return PairedResult(
        method="mcnemar_exact",
        n=n,
        baseline=float(base.mean()),
        candidate=float(cand.mean()),
        delta=delta,
        se=None,
        ci_low=float(lo),
        ci_high=float(hi),
        p_value=p_value,
        mde=minimum_detectable_effect(se_normal, alpha),
        detail={"b": float(b), "c": float(c), "se_normal": se_normal},
    )


def paired_bootstrap(
    baseline_rows: Sequence[Any],
    candidate_rows: Sequence[Any],
    statistic: Callable[[Sequence[Any]], float],
    *,
    alpha: float = 0.05,
    margin: float = 0.0,
    higher_is_better: bool = True,
    n_resamples: int = 2000,
    seed: int = 0,
    vectorized: bool = False,
) -> PairedResult:
    """Bootstrap a corpus-level statistic jointly over example indices and test for a drop.

    `statistic(rows) -> float` computes the corpus statistic (BLEU, aggregate ROUGE,
    perplexity) from a sequence of rows, and is called on each side once on all rows and
    once per resample. Rows are resampled with one index vector shared by both sides (the
    pairing). Numpy arrays are gathered with one fancy-indexing take (`rows[idx]`, so a
    statistic over an (n, k) array of per-example sufficient statistics stays vectorized);
    other sequences as a list `[rows[i] for i in idx]`. p = (1 + #{resamples where the
    candidate is not worse by more than margin}) / (1 + n_resamples); the interval is the
    percentile interval of the resampled deltas; `se` is their standard deviation.

    `vectorized=True` (numpy rows only) promises that `statistic` also accepts a stack of
    resamples, shape (k, n, ...), and returns k values: resamples are then computed in
    chunks, which is what keeps a gate over 10,000 examples fast.

    Raises:
        ValueError: on mismatched lengths, fewer than 2 rows, n_resamples < 1, alpha
            outside (0, 0.5), a negative margin, or a non-finite statistic.
    """
    _check_alpha_margin(alpha, margin)
    n = len(baseline_rows)
    if len(candidate_rows) != n:
        raise ValueError(
            f"baseline and candidate must be paired: {n} baseline rows vs "
            f"{len(candidate_rows)} candidate rows"
        )
    if n < 2:
        raise ValueError(f"paired_bootstrap needs at least 2 paired rows, got {n}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    base_stat = float(statistic(baseline_rows))
    cand_stat = float(statistic(candidate_rows))
    rng = np.random.default_rng(seed)
    if (
        vectorized
        and isinstance(baseline_rows, np.ndarray)
        and isinstance(candidate_rows, np.ndarray)
    ):
        deltas = _vectorized_deltas(baseline_rows, candidate_rows, statistic, n_resamples, rng)
    else:
        deltas = np.empty(n_resamples)
        for r in range(n_resamples):
            idx = rng.integers(0, n, size=n)
            deltas[r] = statistic(_take(candidate_rows, idx)) - statistic(_take(baseline_rows, idx))
    if not (np.isfinite(deltas).all() and np.isfinite([base_stat, cand_stat]).all()):
        raise ValueError("statistic returned a non-finite value on the data or a resample")
    improvement = deltas if higher_is_better else -deltas
    not_worse = int(np.sum(improvement >= -margin))
    se = float(deltas.std(ddof=1)) if n_resamples > 1 else 0.0
    lo, hi = np.quantile(deltas, [alpha, 1.0 - alpha])
    return PairedResult(
        method="paired_bootstrap",
        n=n,
        baseline=base_stat,
        candidate=cand_stat,
        delta=cand_stat - base_stat,
        se=se,
        ci_low=float(lo),
        ci_high=float(hi),
        p_value=(1 + not_worse) / (1 + n_resamples),
        mde=minimum_detectable_effect(se, alpha),
        detail={"n_resamples": float(n_resamples)},
    )


def holm(p_values: Sequence[float], alpha: float = 0.05) -> list[bool]:
    """Return which hypotheses Holm-Bonferroni step-down rejects (True = significant drop)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1 or not np.all((p >= 0.0) & (p <= 1.0)):
        raise ValueError("p_values must be a flat sequence of numbers in [0, 1]")
    m = p.size
    reject = [False] * m
    for rank, i in enumerate(np.argsort(p, kind="stable")):
        if p[i] > alpha / (m - rank):
            break
        reject[int(i)] = True
    return reject


def minimum_detectable_effect(
    se: float, alpha: float = 0.05, power: float = DEFAULT_POWER
) -> float:
    """Return the smallest drop a one-sided level-alpha test detects with `power`, given se."""
    if se < 0 or not np.isfinite(se):
        raise ValueError(f"se must be finite and non-negative, got {se}")
    if not 0.0 < alpha < 1.0 or not 0.0 < power < 1.0:
        raise ValueError(f"alpha and power must be in (0, 1), got {alpha} and {power}")
    return float((special.ndtri(1.0 - alpha) + special.ndtri(power)) * se)


def choose_method(values_baseline: Sequence[float], values_candidate: Sequence[float]) -> str:
    """Return "mcnemar_exact" when every value on both sides is 0 or 1, else "paired_t"."""
    values = np.concatenate(
        [np.asarray(values_baseline, dtype=float), np.asarray(values_candidate, dtype=float)]
    )
    if values.size and np.all((values == 0.0) | (values == 1.0)):
        return "mcnemar_exact"
    return "paired_t"


def _paired_arrays(
    baseline: Sequence[float], candidate: Sequence[float]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    b = np.asarray(baseline, dtype=float)
    c = np.asarray(candidate, dtype=float)
    if b.ndim != 1 or c.ndim != 1:
        raise ValueError("baseline and candidate must be flat sequences of per-example scores")
    if b.size != c.size:
        raise ValueError(
            f"baseline and candidate must be paired: {b.size} baseline values vs "
            f"{c.size} candidate values"
        )
    if not (np.isfinite(b).all() and np.isfinite(c).all()):
        raise ValueError("baseline and candidate scores must be finite (no NaN or inf)")
    return b, c


def _check_alpha_margin(alpha: float, margin: float) -> None:
    # alpha >= 0.5 would make the (1 - 2*alpha) interval empty or inverted.
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    if margin < 0 or not np.isfinite(margin):
        raise ValueError(f"margin is a tolerated drop and must be >= 0, got {margin}")


def _clustered_se(
    d: NDArray[np.float64], clusters: Sequence[str | int | None]
) -> tuple[float, int]:
    if len(clusters) != d.size:
        raise ValueError(f"clusters must give one id per example: {len(clusters)} ids vs {d.size}")
    # Examples without an id become singleton clusters; tagging keeps them apart from ids.
    keys = [("id", g) if g is not None else ("own", i) for i, g in enumerate(clusters)]
    index: dict[tuple[str, object], int] = {}
    codes = np.fromiter((index.setdefault(k, len(index)) for k in keys), dtype=np.intp)
    n_clusters = len(index)
    if n_clusters < 2:
        raise ValueError(f"clustered test needs at least 2 clusters, got {n_clusters}")
    sums = np.bincount(codes, weights=d - d.mean(), minlength=n_clusters)
    var = n_clusters / (n_clusters - 1) * float(np.sum(sums**2)) / d.size**2
    return float(np.sqrt(var)), n_clusters


def _t_p_value(shifted_mean: float, se: float, df: int) -> tuple[float, float]:
    if se == 0.0:
        # Every pair moved by the same amount: the drop is certain or absent.
        t_stat = 0.0 if shifted_mean == 0 else float(np.copysign(np.inf, shifted_mean))
        return (0.0 if shifted_mean < 0 else 1.0), t_stat
    t_stat = shifted_mean / se
    return float(special.stdtr(df, t_stat)), float(t_stat)


def _clopper_pearson(k: int, n: int, confidence: float) -> tuple[float, float]:
    """Return the exact (Clopper-Pearson) interval for a binomial proportion k / n."""
    tail = (1.0 - confidence) / 2.0
    low = float(special.betaincinv(k, n - k + 1, tail)) if k > 0 else 0.0
    high = float(special.betaincinv(k + 1, n - k, 1.0 - tail)) if k < n else 1.0
    return low, high


def _vectorized_deltas(
    base: NDArray[Any],
    cand: NDArray[Any],
    statistic: Callable[[Any], Any],
    n_resamples: int,
    rng: np.random.Generator,
) -> NDArray[np.float64]:
    n = len(base)
    width = max(1, int(np.prod(base.shape[1:])))
    chunk = max(1, min(n_resamples, 2_000_000 // (n * width)))  # ~16 MB per side
    deltas = np.empty(n_resamples)
    for start in range(0, n_resamples, chunk):
        k = min(chunk, n_resamples - start)
        idx = rng.integers(0, n, size=(k, n))
        deltas[start : start + k] = np.asarray(statistic(cand[idx])) - np.asarray(
            statistic(base[idx])
        )
    return deltas


def _take(rows: Sequence[Any], idx: NDArray[np.intp]) -> Any:
    if isinstance(rows, np.ndarray):
        return rows[idx]
    return [rows[i] for i in idx]
