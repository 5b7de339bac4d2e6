"""Gradient: a latency-based limit, Gradient2's smoothed update against a target RTT.

Anchors: Netflix concurrency-limits `Gradient2Limit` (the update and its smoothing) and Envoy's adaptive
concurrency filter (a measured minimum RTT, re-measured by pinning the limit low, and sqrt(L) headroom).
In SLO mode the target is the SLO's share and the RTT held under it is a windowed p99.
"""

from __future__ import annotations

import math
import random
import statistics
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
class GradientConfig:
    """Gradient2's update against Envoy's measured minimum RTT. See `Gradient` for the formula.
    The floor of 3 is Envoy's min_concurrency: drops during an outage cut the limit every window, and
    from a floor of 1 the sqrt headroom took about 4 s to regrow (in a model of the lab's server)."""

    initial_limit: int = 10
    min_limit: int = 3
    max_limit: int = 200
    smoothing: float = 0.2  # weight of the new estimate in each update (Gradient2: 0.2)
    rtt_tolerance: float = 1.5  # the short RTT may reach this multiple of min RTT before the limit shrinks
    min_gradient: float = 0.5  # the deepest cut per update, before smoothing (0.5 -> at most -10 %)
    window: float = 0.25  # seconds: the shortest window whose mean RTT is the short-term RTT
    min_window_samples: int = 10  # a window needs this many samples unless it saw congestion
    probe_interval: float = 30.0  # seconds between two min-RTT measurements (Envoy: 60)
    probe_jitter: float = 0.15  # +- this fraction of the interval, so clients do not probe in step
    probe_limit: int = 3  # concurrency pinned while measuring min RTT (Envoy: min_concurrency 3)
    probe_samples: int = 25  # answers whose median RTT becomes the new min RTT (Envoy: 50)
    lag_threshold_ms: float | None = 70.0  # the server's max_lag; lag above it counts as RTT inflation
    slo_target: float | None = None  # seconds: the RTT percentile's target; None: the min-RTT baseline
    quantile: float = 0.99  # SLO mode: which percentile of the RTTs is held under the target
    percentile_span: float = 1.0  # SLO mode: seconds of answers the percentile is taken over

    def __post_init__(self) -> None:
        owner = "GradientConfig"
        check_limits(owner, self.initial_limit, self.min_limit, self.max_limit)
        check_number(owner, "smoothing", self.smoothing, lambda v: 0 < v <= 1, "in (0, 1]")
        check_number(owner, "rtt_tolerance", self.rtt_tolerance, lambda v: 1 <= v < math.inf, ">= 1")
        check_number(owner, "min_gradient", self.min_gradient, lambda v: 0 < v < 1, "in (0, 1)")
        check_seconds(owner, "window", self.window)
        check_int(owner, "min_window_samples", self.min_window_samples, minimum=1)
        check_seconds(owner, "probe_interval", self.probe_interval)
        check_number(owner, "probe_jitter", self.probe_jitter, lambda v: 0 <= v < 1, "in [0, 1)")
        check_int(owner, "probe_limit", self.probe_limit, minimum=1)
        check_int(owner, "probe_samples", self.probe_samples, minimum=1)
        check_lag_threshold(owner, self.lag_threshold_ms)
        check_slo_target(owner, self.slo_target)
        check_number(owner, "quantile", self.quantile, lambda v: 0 < v <= 1, "in (0, 1]")
        check_seconds(owner, "percentile_span", self.percentile_span)


class Gradient:
    """Latency-based limit: the short-term RTT against a measured no-load RTT.

    Baseline (Envoy adaptive concurrency): at the first sample and then every `probe_interval` seconds
    (jittered), the limit is pinned to `probe_limit`; the median RTT of the next `probe_samples` answers
    admitted under the pin becomes `min_rtt`, and the limit returns to its value before the probe.

    Update, once per window of at least `window` seconds and `min_window_samples` samples:

        short = mean RTT of the window's answered samples (drops excluded: a refused connect is fast
                and says nothing about queueing)
        g_rtt = clamp(min_gradient, 1, rtt_tolerance * min_rtt / short)
        if the window saw a drop:                 new = L * min(min_gradient, g_rtt)
        elif server lag > threshold in it:        new = L * min(clamp(min_gradient, 1, thr / lag), g_rtt)
        elif fewer than L/2 ever in flight:       new = L        (app-limited: do not grow an untested limit)
        else:                                     new = L * g_rtt + sqrt(L)
        L = clamp(min_limit, max_limit, (1 - smoothing) * L + smoothing * new)

    Why this shape. Gradient2's own baseline, a long-term EMA of the RTT, drifts up under sustained
    queueing: in a model of the lab's server at 2x overload without the lag header it let the limit
    climb to its maximum and the lag to seconds. A measured minimum cannot drift; re-measuring it
    every 30 s follows capacity changes. The update keeps Gradient2's clamp to at most 1 and its
    smoothing (no single window moves the limit by more than 10 % down), and takes Envoy's sqrt(L)
    headroom, which stays small at the single-digit limits that saturate the lab's server. Congestion
    windows add no headroom, so a drop or excess lag always shrinks the limit.

    SLO mode (`slo_target` set, as AdaptiveClient does from `--slo-ms`): the target is the SLO's share,
    not a multiple of a no-load RTT, and what is held under it is a percentile (p99) of the answers of
    the last `percentile_span` seconds, not a window's mean: `g_rtt = clamp(min_gradient, 1,
    slo_target / p99)`. Headroom under the SLO is room to grow (the update above, with "in use"
    meaning the window's mean in flight, so one burst does not count); a p99 past the target cuts the
    limit at once, `L = L * g` unsmoothed, and only answers sent after that cut count towards the next
    p99 (one cut per round trip). Smoothing a cut let a limit sized for twice the capacity keep every
    answer past the SLO for seconds when the capacity halved. No min-RTT probe pins the limit low every
    30 s (nothing needs a baseline), so it works the same against any upstream.
    """

    name = "gradient"

    def __init__(self, config: GradientConfig | None = None, *, rng: random.Random | None = None) -> None:
        self.config = config or GradientConfig()
        self.initial_limit = float(self.config.initial_limit)
        self.rng = rng or random.Random()
        self.min_rtt: float | None = None
        self.short_rtt: float | None = None  # of the last closed window, for display
        self.probing = False
        self._probe_started = 0.0
        self._probe_rtts: list[float] = []
        self._deferred_limit = self.initial_limit
        self._next_probe = -math.inf
        self.window = SampleWindow()
        self._last_cut = -math.inf
        cfg = self.config
        self.tail = WindowedPercentile(cfg.percentile_span, cfg.quantile, cfg.min_window_samples)

    def restart(self, now: float) -> None:
        self.window.restart(now)
        self.tail.clear()

    def update(self, limit: float, sample: Sample) -> float:
        if self.config.slo_target is not None:
            return self._window(limit, sample)
        if self.probing:
            return self._probe(limit, sample)
        if sample.at >= self._next_probe:
            self.probing = True
            self._probe_started = sample.at
            self._probe_rtts = []
            self._deferred_limit = limit
            return float(max(self.config.min_limit, min(int(limit), self.config.probe_limit)))
        return self._window(limit, sample)

    def _probe(self, limit: float, sample: Sample) -> float:
        cfg = self.config
        if sample.dropped or sample.at - sample.rtt < self._probe_started:
            return limit
        self._probe_rtts.append(sample.rtt)
        if len(self._probe_rtts) < cfg.probe_samples:
            return limit
        self.min_rtt = statistics.median(self._probe_rtts)
        self.probing = False
        jitter = 1 + cfg.probe_jitter * self.rng.uniform(-1.0, 1.0)
        self._next_probe = sample.at + cfg.probe_interval * jitter
        self.window.restart(sample.at)
        return self._deferred_limit

    def _window(self, limit: float, sample: Sample) -> float:
        cfg, window = self.config, self.window
        window.add(sample)
        if not sample.dropped and sample.at - sample.rtt >= self._last_cut:  # sent after the last SLO cut
            self.tail.add(sample.at, sample.rtt)

        lag_gradient = None
        if window.lag_over(cfg.lag_threshold_ms):
            lag_gradient = max(cfg.min_gradient, cfg.lag_threshold_ms / window.max_lag)  # type: ignore[operator]
        congested = window.dropped or lag_gradient is not None
        if window.open_at(sample.at, cfg.window, cfg.min_window_samples, congested):
            return limit

        rtt_gradient = 1.0
        if cfg.slo_target is not None:
            short = self.tail.value(sample.at)
            target = cfg.slo_target
        else:
            short = window.mean_rtt
            target = None if self.min_rtt is None else cfg.rtt_tolerance * self.min_rtt
        self.short_rtt = short
        if short is not None and short > 0 and target is not None:
            rtt_gradient = max(cfg.min_gradient, min(1.0, target / short))
        slo_mode = cfg.slo_target is not None
        in_use = window.in_flight_sum / window.count if slo_mode else window.max_in_flight
        smoothing = cfg.smoothing
        if window.dropped:
            target = limit * min(cfg.min_gradient, rtt_gradient)
        elif lag_gradient is not None:
            target = limit * min(lag_gradient, rtt_gradient)
        elif slo_mode and rtt_gradient < 1:
            # The p99 is past the SLO target: every answer is eating the SLO's margin, so cut in
            # proportion at once, then wait for answers sent after the cut before judging again.
            target, smoothing = limit * rtt_gradient, 1.0
            self._last_cut = sample.at
            self.tail.clear()
        elif 2 * in_use < limit or (slo_mode and short is None):  # app-limited, or no fresh p99 yet
            target = limit
        else:
            target = limit * rtt_gradient + math.sqrt(limit)
        window.restart(sample.at)
        new = (1 - smoothing) * limit + smoothing * target
        return min(float(cfg.max_limit), max(float(cfg.min_limit), new))
