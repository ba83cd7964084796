"""Tests for the gate's paired statistics, against scipy where the answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from service.gate.stats import (
    PairedResult,
    choose_method,
    holm,
    mcnemar_test,
    minimum_detectable_effect,
    paired_bootstrap,
    paired_mean_test,
)

Z_SUM = stats.norm.ppf(0.95) + stats.norm.ppf(0.8)


def correlated_binary(
    n: int, *, seed: int, flip_to_wrong: float, flip_to_right: float, base_acc: float = 0.8
) -> tuple[np.ndarray, np.ndarray]:
    """Baseline ~ Bernoulli(base_acc); the candidate copies it except for the given flips."""
    rng = np.random.default_rng(seed)
    base = (rng.random(n) < base_acc).astype(float)
    u = rng.random(n)
    cand = np.where(base == 1.0, u >= flip_to_wrong, u < flip_to_right).astype(float)
    return base, cand


def drop_3_points(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    # 0.8 * (1 - 0.0875) + 0.2 * 0.2 = 0.77: a true 3-point drop.
    return correlated_binary(n, seed=seed, flip_to_wrong=0.0875, flip_to_right=0.2)


def no_change(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    # 0.8 * (1 - 0.05) + 0.2 * 0.2 = 0.80: same accuracy, 8% of pairs discordant.
    return correlated_binary(n, seed=seed, flip_to_wrong=0.05, flip_to_right=0.2)


@pytest.fixture
def scores() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    base = rng.normal(0.6, 0.15, 300)
    return base, base + rng.normal(-0.01, 0.1, 300)


# paired t ---------------------------------------------------------------------------------


def test_paired_t_matches_scipy_ttest_rel(scores: tuple[np.ndarray, np.ndarray]) -> None:
    base, cand = scores
    result = paired_mean_test(base, cand)
    expected = stats.ttest_rel(cand, base, alternative="less")
    assert result.method == "paired_t"
    assert result.p_value == pytest.approx(expected.pvalue, abs=1e-10)
    assert result.detail["t"] == pytest.approx(expected.statistic, rel=1e-10)
    assert result.n == 300
    assert result.delta == pytest.approx(cand.mean() - base.mean())
    assert result.se == pytest.approx(np.std(cand - base, ddof=1) / np.sqrt(300))


def test_paired_t_with_margin_shifts_the_candidate(scores: tuple[np.ndarray, np.ndarray]) -> None:
    base, cand = scores
    result = paired_mean_test(base, cand, margin=0.02)
    expected = stats.ttest_rel(cand + 0.02, base, alternative="less").pvalue
    assert result.p_value == pytest.approx(expected, abs=1e-10)
    assert result.p_value > paired_mean_test(base, cand).p_value


def test_paired_t_lower_is_better_mirrors(scores: tuple[np.ndarray, np.ndarray]) -> None:
    base, cand = scores
    # nll-like metric: the same data negated, so a rise is the drop.
    mirrored = paired_mean_test(-base, -cand, margin=0.02, higher_is_better=False)
    direct = paired_mean_test(base, cand, margin=0.02)
    assert mirrored.p_value == pytest.approx(direct.p_value, abs=1e-12)
    assert mirrored.delta == pytest.approx(-direct.delta)
    assert (mirrored.ci_low, mirrored.ci_high) == pytest.approx((-direct.ci_high, -direct.ci_low))
    expected = stats.ttest_rel(-cand, -base + 0.02, alternative="greater").pvalue
    assert mirrored.p_value == pytest.approx(expected, abs=1e-10)


def test_paired_t_interval_agrees_with_p_value(scores: tuple[np.ndarray, np.ndarray]) -> None:
    base, cand = scores
    for margin in (0.0, 0.005, 0.01, 0.02, 0.05):
        result = paired_mean_test(base, cand, margin=margin)
        assert (result.ci_high < -margin) == (result.p_value < 0.05)
        assert result.ci_low < result.delta < result.ci_high


def test_paired_t_identical_shift_has_certain_answer() -> None:
    base = [0.5, 0.6, 0.7]
    assert paired_mean_test(base, [0.4, 0.5, 0.6]).p_value == 0.0
    assert paired_mean_test(base, base).p_value == 1.0


# clustered -----------------------------------------------------------------------------


def test_clustered_se_is_larger_when_clusters_are_correlated() -> None:
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(40), 10)
    shared = rng.normal(0, 0.2, 40)[groups]  # e.g. one hard source document per group
    base = rng.normal(0.6, 0.1, 400)
    cand = base + shared + rng.normal(0, 0.05, 400)
    naive = paired_mean_test(base, cand)
    clustered = paired_mean_test(base, cand, clusters=[f"doc{g}" for g in groups])
    assert clustered.method == "clustered_paired_t"
    assert clustered.detail["n_clusters"] == 40
    assert clustered.detail["df"] == 39
    assert clustered.se is not None and naive.se is not None
    assert clustered.se > 2 * naive.se
    assert clustered.mde is not None and naive.mde is not None and clustered.mde > naive.mde


def test_clustered_with_equal_clusters_is_ttest_on_cluster_means() -> None:
    rng = np.random.default_rng(4)
    groups = np.repeat(np.arange(25), 8)
    base = rng.normal(0.5, 0.1, 200)
    cand = base + rng.normal(0, 0.1, 25)[groups] + rng.normal(-0.02, 0.05, 200)
    result = paired_mean_test(base, cand, clusters=list(groups))
    cand_means = cand.reshape(25, 8).mean(axis=1)
    base_means = base.reshape(25, 8).mean(axis=1)
    expected = stats.ttest_rel(cand_means, base_means, alternative="less")
    assert result.p_value == pytest.approx(expected.pvalue, abs=1e-10)
    assert result.detail["t"] == pytest.approx(expected.statistic, rel=1e-10)


def test_singleton_clusters_equal_the_naive_test(scores: tuple[np.ndarray, np.ndarray]) -> None:
    base, cand = scores
    naive = paired_mean_test(base, cand)
    # CR1's G/(G-1) factor turns the cluster-sum variance into exactly sd(ddof=1)^2 / n.
    for ids in (list(range(300)), [None] * 300, [None, *range(1, 300)]):
        own = paired_mean_test(base, cand, clusters=ids)
        assert own.detail["n_clusters"] == 300
        assert own.se == pytest.approx(naive.se, rel=1e-12)
        assert own.p_value == pytest.approx(naive.p_value, abs=1e-12)


def test_examples_without_cluster_id_are_their_own_cluster() -> None:
    base = np.linspace(0, 1, 6)
    cand = base + np.array([0.1, -0.2, 0.05, -0.1, 0.0, 0.3])
    result = paired_mean_test(base, cand, clusters=["a", "a", None, None, "b", "b"])
    assert result.detail["n_clusters"] == 4


# McNemar -------------------------------------------------------------------------------


def test_mcnemar_matches_scipy_binomtest() -> None:
    base, cand = drop_3_points(400, seed=1)
    result = mcnemar_test(base, cand)
    b = int(np.sum((base == 1) & (cand == 0)))
    c = int(np.sum((base == 0) & (cand == 1)))
    assert (result.detail["b"], result.detail["c"]) == (b, c)
    expected = stats.binomtest(b, b + c, 0.5, alternative="greater").pvalue
    assert result.p_value == pytest.approx(expected, abs=1e-12)
    assert result.se is None
    assert result.delta == pytest.approx((c - b) / 400)
    assert (result.ci_high < 0) == (result.p_value < 0.05)


def test_mcnemar_lower_is_better_counts_the_other_way() -> None:
    base, cand = drop_3_points(400, seed=1)
    errors = mcnemar_test(1 - base, 1 - cand, higher_is_better=False)
    accuracy = mcnemar_test(base, cand)
    assert errors.p_value == pytest.approx(accuracy.p_value)
    assert errors.detail["b"] == accuracy.detail["b"]
    assert (errors.ci_low, errors.ci_high) == pytest.approx((-accuracy.ci_high, -accuracy.ci_low))


def test_mcnemar_without_discordant_pairs_is_not_a_drop() -> None:
    result = mcnemar_test([1, 0, 1], [1, 0, 1])
    assert result.p_value == 1.0
    assert result.delta == 0.0


# synthetic truth -----------------------------------------------------------------------


def test_real_3_point_drop_on_2000_items_is_detected() -> None:
    base, cand = drop_3_points(2000, seed=0)
    assert mcnemar_test(base, cand).p_value < 0.05
    assert paired_mean_test(base, cand).p_value < 0.05


def test_noise_on_50_items_is_not_flagged() -> None:
    base, cand = no_change(50, seed=0)
    assert mcnemar_test(base, cand).p_value >= 0.05
    assert paired_mean_test(base, cand).p_value >= 0.05


def test_false_positive_rate_under_no_change_is_near_alpha() -> None:
    flagged = {"mcnemar": 0, "paired_t": 0}
    for seed in range(200):
        base, cand = no_change(50, seed=seed)
        flagged["mcnemar"] += mcnemar_test(base, cand).p_value < 0.05
        flagged["paired_t"] += paired_mean_test(base, cand).p_value < 0.05
    assert flagged["mcnemar"] / 200 <= 0.08
    assert flagged["paired_t"] / 200 <= 0.08


# bootstrap -----------------------------------------------------------------------------


def test_bootstrap_of_the_mean_agrees_with_paired_t() -> None:
    rng = np.random.default_rng(11)
    base = rng.normal(0.6, 0.2, 500)
    cand = base + rng.normal(-0.008, 0.15, 500)  # true delta -0.008: a middling p
    boot = paired_bootstrap(base, cand, np.mean, n_resamples=5000, seed=1)
    t = paired_mean_test(base, cand)
    assert 0.02 < t.p_value < 0.5
    assert boot.p_value == pytest.approx(t.p_value, abs=0.02)
    assert boot.se == pytest.approx(t.se, rel=0.05)
    assert boot.ci_low < -0.008 < boot.ci_high
    assert boot.delta == pytest.approx(t.delta)


def test_bootstrap_corpus_statistic_on_plain_rows() -> None:
    """Perplexity over (nll_sum, tokens) rows: a ratio of sums, not a mean of examples."""
    rng = np.random.default_rng(5)
    tokens = rng.integers(5, 60, 400)
    base_rows = [(float(t * rng.normal(2.0, 0.3)), int(t)) for t in tokens]
    cand_rows = [(nll + float(t * rng.normal(0.15, 0.3)), t) for (nll, t) in base_rows]

    def perplexity(rows: list[tuple[float, int]]) -> float:
        return float(np.exp(sum(r[0] for r in rows) / sum(r[1] for r in rows)))

    result = paired_bootstrap(
        base_rows, cand_rows, perplexity, higher_is_better=False, n_resamples=500
    )
    assert result.candidate > result.baseline
    assert result.p_value < 0.01
    assert result.ci_low > 0
    tolerant = paired_bootstrap(
        base_rows, cand_rows, perplexity, higher_is_better=False, margin=5.0, n_resamples=500
    )
    assert tolerant.p_value > 0.5


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    base, cand = drop_3_points(300, seed=2)
    first = paired_bootstrap(base, cand, np.mean, n_resamples=300, seed=9)
    again = paired_bootstrap(base, cand, np.mean, n_resamples=300, seed=9)
    other = paired_bootstrap(base, cand, np.mean, n_resamples=300, seed=10)
    assert first == again
    assert (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)


def test_bootstrap_p_value_is_smoothed() -> None:
    base = np.ones(50)
    cand = np.zeros(50)
    assert paired_bootstrap(base, cand, np.mean, n_resamples=99).p_value == pytest.approx(0.01)


# Holm ----------------------------------------------------------------------------------


def reference_holm(p: list[float], alpha: float) -> list[bool]:
    order = sorted(range(len(p)), key=lambda i: p[i])
    reject = [False] * len(p)
    for rank, i in enumerate(order):
        if p[i] > alpha / (len(p) - rank):
            break
        reject[i] = True
    return reject


def test_holm_hand_computed() -> None:
    # sorted 0.005 <= .05/4, 0.01 <= .05/3, then 0.03 > .05/2 stops the step-down
    assert holm([0.01, 0.04, 0.03, 0.005], alpha=0.05) == [True, False, False, True]
    # Bonferroni rejects only 0.01 here; Holm steps down to reject all three
    assert holm([0.01, 0.02, 0.03], alpha=0.05) == [True, True, True]
    assert holm([]) == []


def test_holm_matches_reference_and_dominates_bonferroni() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        m = int(rng.integers(1, 12))
        p = list(rng.uniform(0, 0.1, m) ** 2)
        flags = holm(p, alpha=0.05)
        assert flags == reference_holm(p, 0.05)
        bonferroni = [x <= 0.05 / m for x in p]
        assert all(f for f, bon in zip(flags, bonferroni, strict=True) if bon)


# MDE -----------------------------------------------------------------------------------


def test_minimum_detectable_effect_formula() -> None:
    assert minimum_detectable_effect(0.01) == pytest.approx(Z_SUM * 0.01)
    assert minimum_detectable_effect(0.01, alpha=0.01, power=0.9) > minimum_detectable_effect(0.01)


def test_mde_shrinks_like_one_over_sqrt_n(scores: tuple[np.ndarray, np.ndarray]) -> None:
    base, cand = scores
    small = paired_mean_test(base, cand).mde
    large = paired_mean_test(np.tile(base, 4), np.tile(cand, 4)).mde
    assert small is not None and large is not None
    assert large / small == pytest.approx(0.5, rel=0.01)


def test_mde_tells_small_eval_sets_apart() -> None:
    small = mcnemar_test(*no_change(50, seed=0)).mde
    large = mcnemar_test(*no_change(2000, seed=0)).mde
    assert small is not None and large is not None
    assert small > 0.03 > large


# method choice and errors --------------------------------------------------------------


def test_choose_method() -> None:
    assert choose_method([1, 0, 1.0], [True, False, 0]) == "mcnemar_exact"
    assert choose_method([1, 0, 1], [1, 0, 0.5]) == "paired_t"
    assert choose_method([], []) == "paired_t"


@pytest.mark.parametrize("test", [paired_mean_test, mcnemar_test])
def test_mismatched_lengths(test) -> None:
    with pytest.raises(ValueError, match="3 baseline values vs 2 candidate values"):
        test([1, 0, 1], [1, 0])


def test_bootstrap_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="3 baseline rows vs 2 candidate rows"):
        paired_bootstrap([1, 0, 1], [1, 0], np.mean)


@pytest.mark.parametrize("test", [paired_mean_test, mcnemar_test])
def test_too_few_pairs(test) -> None:
    with pytest.raises(ValueError, match="at least 2 paired examples, got 1"):
        test([1.0], [0.0])


def test_too_few_clusters() -> None:
    with pytest.raises(ValueError, match="at least 2 clusters, got 1"):
        paired_mean_test([0.1, 0.2, 0.3], [0.2, 0.2, 0.2], clusters=["a", "a", "a"])


def test_mcnemar_rejects_non_binary_and_margins() -> None:
    with pytest.raises(ValueError, match="0/1 outcomes; candidate has 1 other value"):
        mcnemar_test([1, 0, 1], [1, 0.5, 1])
    with pytest.raises(ValueError, match="margin=0 only"):
        mcnemar_test([1, 0, 1], [1, 0, 1], margin=0.01)


def test_bad_values_and_parameters() -> None:
    with pytest.raises(ValueError, match="finite"):
        paired_mean_test([1.0, float("nan")], [1.0, 0.5])
    with pytest.raises(ValueError, match="alpha"):
        paired_mean_test([1.0, 0.0], [1.0, 0.5], alpha=0.5)
    with pytest.raises(ValueError, match="margin"):
        paired_mean_test([1.0, 0.0], [1.0, 0.5], margin=-0.1)
    with pytest.raises(ValueError, match="non-finite"):
        paired_bootstrap([1.0, 2.0], [1.0, 2.0], lambda rows: float("nan"))


def test_result_is_a_frozen_record(scores: tuple[np.ndarray, np.ndarray]) -> None:
    result = paired_mean_test(*scores)
    assert isinstance(result, PairedResult)
    with pytest.raises(AttributeError):
        result.p_value = 0.0  # type: ignore[misc]


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (57, 140), (1, 2000)])
def test_exact_interval_matches_scipy_binomtest(k: int, n: int):
    from scipy import stats as scipy_stats

    from service.gate.stats import _clopper_pearson

    expected = scipy_stats.binomtest(k, n, 0.5).proportion_ci(0.9, "exact")
    low, high = _clopper_pearson(k, n, 0.9)
    assert low == pytest.approx(expected.low, abs=1e-12)
    assert high == pytest.approx(expected.high, abs=1e-12)


def test_vectorized_bootstrap_equals_the_resample_loop():
    from service.gate.stats import paired_bootstrap

    rng = np.random.default_rng(3)
    base = np.column_stack([rng.gamma(2.0, 1.0, 500), rng.integers(5, 50, 500).astype(float)])
    cand = base.copy()
    cand[:, 0] *= 1.02

    def ratio(rows):
        return rows[..., 0].sum(axis=-1) / rows[..., 1].sum(axis=-1)

    loop = paired_bootstrap(base, cand, ratio, higher_is_better=False, n_resamples=300, seed=5)
    fast = paired_bootstrap(
        base, cand, ratio, higher_is_better=False, n_resamples=300, seed=5, vectorized=True
    )
    assert fast.p_value == pytest.approx(loop.p_value, abs=1e-12)
    assert fast.ci_low == pytest.approx(loop.ci_low, rel=1e-9)
    assert fast.ci_high == pytest.approx(loop.ci_high, rel=1e-9)
