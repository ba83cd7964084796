"""LTTB downsampling: short series pass through; long ones keep their ends and their peaks."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboards.lttb import MAX_POINTS, lttb


def test_short_series_is_returned_unchanged() -> None:
    xs, ys = [0, 1, 2, 5], [3.0, 1.0, 4.0, 1.5]
    assert lttb(xs, ys, 10) == ([0.0, 1.0, 2.0, 5.0], [3.0, 1.0, 4.0, 1.5])
    assert lttb(xs, ys, 4) == ([0.0, 1.0, 2.0, 5.0], [3.0, 1.0, 4.0, 1.5])
    assert lttb([], [], 3) == ([], [])


def test_long_series_keeps_at_most_threshold_points_and_its_ends() -> None:
    xs = list(range(10_000))
    ys = [math.sin(x / 300) for x in xs]
    dx, dy = lttb(xs, ys)
    assert len(dx) == len(dy) == MAX_POINTS
    assert (dx[0], dy[0]) == (0.0, ys[0])
    assert (dx[-1], dy[-1]) == (9999.0, ys[-1])
    assert all(ys[int(x)] == y for x, y in zip(dx, dy, strict=True))  # real points, not averages


def test_a_single_spike_survives_where_striding_loses_it() -> None:
    n, threshold, spike = 5000, 100, 2503
    xs = list(range(n))
    ys = [1.0] * n
    ys[spike] = 50.0
    stride = n // threshold
    assert spike % stride != 0, "striding must miss the spike for this test to mean anything"
    assert max(ys[::stride]) == 1.0
    dx, dy = lttb(xs, ys, threshold)
    assert max(dy) == 50.0
    assert dx[dy.index(50.0)] == spike


def test_x_stays_sorted() -> None:
    xs = [i * 0.5 for i in range(3000)]
    ys = [(-1) ** i * i for i in range(3000)]
    dx, _ = lttb(xs, ys, 300)
    assert dx == sorted(dx) and len(set(dx)) == len(dx)


def test_mismatched_lengths_are_an_error() -> None:
    with pytest.raises(ValueError, match="xs has 3 points but ys has 2"):
        lttb([1, 2, 3], [1.0, 2.0])


def test_threshold_below_three_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        lttb(list(range(10)), [0.0] * 10, 2)


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(
    ys=st.lists(finite, min_size=0, max_size=400),
    threshold=st.integers(min_value=3, max_value=120),
    gaps=st.lists(st.floats(min_value=0.001, max_value=100), min_size=400, max_size=400),
)
def test_random_series(ys: list[float], threshold: int, gaps: list[float]) -> None:
    xs = []
    x = 0.0
    for gap in gaps[: len(ys)]:
        xs.append(x)
        x += gap
    dx, dy = lttb(xs, ys, threshold)
    assert len(dx) == len(dy) == min(len(ys), threshold)
    assert dx == sorted(dx) and len(set(dx)) == len(dx)
    kept = dict(zip(xs, ys, strict=True))
    assert all(kept[a] == b for a, b in zip(dx, dy, strict=True))
    if ys:
        assert (dx[0], dy[0]) == (xs[0], ys[0])
        assert (dx[-1], dy[-1]) == (xs[-1], ys[-1])
