"""Largest-Triangle-Three-Buckets downsampling for curves sent to the browser.

Owns one function, `lttb`: keep at most `threshold` points of a series while keeping its
visual shape (peaks and dips survive, unlike striding or averaging). The first and last
points are always kept. Reference: Sveinn Steinarsson, "Downsampling Time Series for
Visual Representation" (2013). Vectorised per bucket with NumPy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: At most this many points per series leave the server.
MAX_POINTS = 2000


def lttb(
    xs: Sequence[float], ys: Sequence[float], threshold: int = MAX_POINTS
) -> tuple[list[float], list[float]]:
    """Return (xs, ys) downsampled to at most `threshold` points (unchanged if fewer)."""
    n = len(xs)
    if len(ys) != n:
        raise ValueError(f"xs has {n} points but ys has {len(ys)}")
    if threshold >= n or n <= 2:
        return [float(x) for x in xs], [float(y) for y in ys]
    if threshold < 3:
        raise ValueError("threshold must be at least 3")
    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    # Bucket edges over the interior points (the first and last are kept as they are).
    edges = np.linspace(1, n - 1, threshold - 1).astype(np.int64)
    keep = np.empty(threshold, dtype=np.int64)
    keep[0], keep[-1] = 0, n - 1
    a = 0
    for i in range(threshold - 2):
        start, stop = edges[i], edges[i + 1]
        nxt_start = stop
        nxt_stop = edges[i + 2] if i + 2 < len(edges) else n
        # The next bucket's average point is the triangle's third corner.
        cx = x[nxt_start:nxt_stop].mean()
        cy = y[nxt_start:nxt_stop].mean()
        bx, by = x[start:stop], y[start:stop]
        area = np.abs((x[a] - cx) * (by - y[a]) - (x[a] - bx) * (cy - y[a]))
        a = start + int(np.argmax(area))
        keep[i + 1] = a
    return x[keep].tolist(), y[keep].tolist()
