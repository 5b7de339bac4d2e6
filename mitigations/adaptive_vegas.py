"""Vegas: the limit from a queue-size estimate, as TCP Vegas does for a congestion window.

Anchor: Netflix concurrency-limits `VegasLimit`. With `rtt_noload` the fastest answer seen, a limit L
whose answers take `rtt` keeps about `L * (1 - rtt_noload / rtt)` calls queued at the server. Vegas
grows while that queue is small and shrinks when it is long, with thresholds that scale with log10(L).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mitigations._checks import check_int, check_seconds
from mitigations.adaptive_base import (
    Sample,
    SampleWindow,
    WindowedPercentile,
    check_lag_threshold,
    check_limits,
    check_number,
    check_slo_target,
)


@dataclass(frozen=True)
class VegasConfig:
    """Netflix VegasLimit's rules, with the lab's bounds (see `GradientConfig` for why the floor is 3),
    updated once per window of answers rather than per answer, and `rtt_noload` re-measured every
    `noload_reset` seconds so that it follows a capacity change (Netflix: every ~30 x L samples)."""

    initial_limit: int = 10
    min_limit: int = 3
    max_limit: int = 200
    smoothing: float = 1.0  # Netflix's default: no smoothing
    window: float = 0.25
    min_window_samples: int = 10
    noload_reset: float = 30.0
    lag_threshold_ms: float | None = 70.0
    slo_target: float | None = None  # seconds: a windowed p99 over this is congestion
    quantile: float = 0.99
    percentile_span: float = 1.0

    def __post_init__(self) -> None:
        owner = "VegasConfig"
        check_limits(owner, self.initial_limit, self.min_limit, self.max_limit)
        check_number(owner, "smoothing", self.smoothing, lambda v: 0 < v <= 1, "in (0, 1]")
        check_seconds(owner, "window", self.window)
        check_int(owner, "min_window_samples", self.min_window_samples, minimum=1)
        check_seconds(owner, "noload_reset", self.noload_reset)
        check_lag_threshold(owner, self.lag_threshold_ms)
        check_slo_target(owner, self.slo_target)
        check_number(owner, "quantile", self.quantile, lambda v: 0 < v <= 1, "in (0, 1]")
        check_seconds(owner, "percentile_span", self.percentile_span)


def log10_step(limit: float) -> int:
    """Netflix's Log10RootFunction: max(1, int(log10(L)))."""
    return max(1, int(math.log10(max(1.0, limit))))


class Vegas:
    """Once per window of at least `window` seconds and `min_window_samples` answers:

        rtt   = mean RTT of the window's answers; rtt_noload = the fastest answer since the last reset
        queue = ceil(L * (1 - rtt_noload / rtt));  s = max(1, int(log10 L))
        congested (a drop, lag over the threshold, or the windowed p99 over slo_target): new = L - s
        elif fewer than L/2 ever in flight:  new = L               (app-limited)
        elif queue <= s:                     new = L + 6 s         (beta: far below the target queue)
        elif queue <  3 s:                   new = L + s           (alpha)
        elif queue >  6 s:                   new = L - s           (beta)
        else:                                new = L
        L = clamp(min_limit, max_limit, (1 - smoothing) L + smoothing new)

    The queue estimate is a mean-based figure, as in Netflix; the SLO check uses a windowed percentile,
    because a tail can miss the SLO while the mean looks fine.
    """

    name = "vegas"

    def __init__(self, config: VegasConfig | None = None) -> None:
        self.config = config or VegasConfig()
        cfg = self.config
        self.initial_limit = float(cfg.initial_limit)
        self.rtt_noload: float | None = None
        self.queue: float | None = None  # the last estimate, for display
        self.tail = WindowedPercentile(cfg.percentile_span, cfg.quantile, cfg.min_window_samples)
        self._noload_since: float | None = None
        self.window = SampleWindow()

    def restart(self, now: float) -> None:
        self.window.restart(now)
        self.tail.clear()

    def update(self, limit: float, sample: Sample) -> float:
        cfg, window = self.config, self.window
        if self._noload_since is None or sample.at - self._noload_since >= cfg.noload_reset:
            self._noload_since = sample.at
            self.rtt_noload = None
        window.add(sample)
        if not sample.dropped:
            self.tail.add(sample.at, sample.rtt)
            if sample.rtt > 0 and (self.rtt_noload is None or sample.rtt < self.rtt_noload):
                self.rtt_noload = sample.rtt
        lagging = window.lag_over(cfg.lag_threshold_ms)
        if window.open_at(sample.at, cfg.window, cfg.min_window_samples, window.dropped or lagging):
            return limit
        new = self._target(limit, sample.at, lagging)
        window.restart(sample.at)
        new = (1 - cfg.smoothing) * limit + cfg.smoothing * new
        return min(float(cfg.max_limit), max(float(cfg.min_limit), new))

    def _target(self, limit: float, now: float, lagging: bool) -> float:
        cfg = self.config
        step = log10_step(limit)
        tail = self.tail.value(now) if cfg.slo_target is not None else None
        if self.window.dropped or lagging or (tail is not None and tail > cfg.slo_target):  # type: ignore[operator]
            return limit - step
        rtt = self.window.mean_rtt
        if 2 * self.window.max_in_flight < limit or rtt is None or self.rtt_noload is None:
            return limit
        self.queue = math.ceil(limit * (1 - self.rtt_noload / rtt)) if rtt > 0 else 0
        if self.queue <= step:
            return limit + 6 * step
        if self.queue < 3 * step:
            return limit + step
        if self.queue > 6 * step:
            return limit - step
        return limit
