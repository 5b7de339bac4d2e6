"""Sampled cumulative counters: their value at a time, how fast they grew, and a percentile.

One meaning each: `rate_between` is the counter's growth per second, unclamped (a counter that was
reset reads negative; a caller that wants a floor writes `max(0.0, ...)`), interpolated between samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise


def jain(values: Sequence[float]) -> float | None:
    """Jain's fairness index, (sum x)^2 / (n * sum x^2): 1 when every share is the same, 1/n when one
    takes everything (Jain, Chiu and Hawe, DEC-TR-301, 1984); None when there is nothing to share (no
    values, or all zero)."""
    squares = sum(x * x for x in values)
    if not values or squares <= 0:
        return None
    return sum(values) ** 2 / (len(values) * squares)


def percentile(values: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile (share in (0, 1]); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def value_at(points: Sequence[tuple[float, float]], t: float) -> float | None:
    """A sampled cumulative counter at time `t`, interpolated linearly between the samples around it.
    None when `t` lies outside the samples (the counter was not watched then)."""
    ordered = sorted(points)
    for (t0, v0), (t1, v1) in pairwise(ordered):
        if t0 <= t <= t1:
            return v0 if t1 == t0 else v0 + (v1 - v0) * (t - t0) / (t1 - t0)
    if ordered and ordered[-1][0] == t:
        return ordered[-1][1]
    return None


def rate_between(points: Sequence[tuple[float, float]], start: float, end: float) -> float | None:
    """How fast a sampled cumulative counter grew between `start` and `end`, per second."""
    first, last = value_at(points, start), value_at(points, end)
    if first is None or last is None or end <= start:
        return None
    return (last - first) / (end - start)
