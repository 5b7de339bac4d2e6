"""Knee: a limit that settles where throughput stops growing with concurrency, with the SLO as a ceiling.

Anchor: Envoy's adaptive concurrency filter. It re-measures the no-load RTT by pinning concurrency low for
a moment every interval, then moves the limit by `gradient = minRTT * (1 + tolerance) / sampleRTT`:
below the knee answers take about minRTT (the gradient is above 1 and the limit grows); past it every
extra call only queues, the RTT grows with the limit, and the gradient pulls the limit back to where
the queue is `tolerance` of minRTT. For a server with a fixed service rate (c servers of service time s)
the RTT past the knee is `L s / c`, so `gradient * L = c (1 + tolerance)` whatever L was: one update lands
at the knee plus the tolerance (docs/adaptive-limits.md, "The knee").
"""

from __future__ import annotations

import math
import random
import statistics
from collections import deque
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

MAX_CONFIRMS = 3  # confirming probes in a row at most, so a noisy server is not probed every few seconds
MAX_STEP = 0.5  # ln(L) moves by at most this times the dither per window
ELASTICITY_GAIN = 2.0  # ln(L) moves by this times (measured - target elasticity) per window
ELASTICITY_POINTS = 3  # windows whose (ln n, ln RTT) the elasticity is fitted through


@dataclass(frozen=True)
class KneeConfig:
    """Envoy's gradient against a probed minimum RTT, tuned to settle near the knee (see `Knee`).

    The defaults are Envoy's where they transfer (the gradient's clamp to [0.5, 2], sqrt(L) headroom,
    probing at a pinned concurrency of 3 with jitter) and tighter where Envoy's would settle too far past
    the knee: tolerance 0.1 (Envoy 0.25) and half the sqrt(L) headroom, added only below the target.
    """

    initial_limit: int = 10
    min_limit: int = 3
    max_limit: int = 200
    tolerance: float = 0.1  # the queue allowed, as a share of min RTT (Envoy: 0.25)
    headroom: float = 0.5  # the probe step: headroom * sqrt(L) per window while under the target
    min_gradient: float = 0.5  # the deepest cut of one update
    max_gradient: float = 2.0  # the fastest growth of one update (Envoy: 2)
    window: float = 0.25  # seconds: the shortest window whose mean RTT is the sample RTT
    min_window_samples: int = 10  # a window needs this many answers unless it saw congestion
    probe_interval: float = 30.0  # seconds between min-RTT probes (Envoy: 60)
    probe_confirm: float = 2.0  # seconds to a confirming probe after a baseline that rose (or the first)
    probe_jitter: float = 0.15  # +- this fraction of each interval, so instances do not probe in step
    probe_limit: int = 3  # concurrency pinned while measuring min RTT (Envoy: min_concurrency 3)
    probe_samples: int = 15  # answers whose median RTT becomes the new min RTT (Envoy: 50)
    lag_threshold_ms: float | None = 70.0  # the server's max_lag; lag above it cuts in proportion
    slo_target: float | None = None  # seconds: the ceiling; a windowed p99 past it cuts at once
    quantile: float = 0.99
    percentile_span: float = 1.0
    elasticity: float = 0.15  # the knee: where 1 % more calls in flight bring less than this % more answers
    dither: float = 0.0  # > 0: the limit alternates L (1 +- dither) by window to measure the elasticity
    fleet_size: int = 1  # instances sharing the upstream: one sees 1 / fleet_size of the queue it adds to

    def __post_init__(self) -> None:
        owner = "KneeConfig"
        check_limits(owner, self.initial_limit, self.min_limit, self.max_limit)
        check_number(owner, "tolerance", self.tolerance, lambda v: 0 < v <= 10, "in (0, 10]")
        check_number(owner, "headroom", self.headroom, lambda v: 0 < v <= 10, "in (0, 10]")
        check_number(owner, "min_gradient", self.min_gradient, lambda v: 0 < v < 1, "in (0, 1)")
        check_number(owner, "max_gradient", self.max_gradient, lambda v: 1 < v <= 10, "in (1, 10]")
        check_seconds(owner, "window", self.window)
        check_int(owner, "min_window_samples", self.min_window_samples, minimum=1)
        check_seconds(owner, "probe_interval", self.probe_interval)
        check_seconds(owner, "probe_confirm", self.probe_confirm)
        check_number(owner, "probe_jitter", self.probe_jitter, lambda v: 0 <= v < 1, "in [0, 1)")
        check_int(owner, "probe_limit", self.probe_limit, minimum=1)
        check_int(owner, "probe_samples", self.probe_samples, minimum=1)
        check_lag_threshold(owner, self.lag_threshold_ms)
        check_slo_target(owner, self.slo_target)
        check_number(owner, "quantile", self.quantile, lambda v: 0 < v <= 1, "in (0, 1]")
        check_seconds(owner, "percentile_span", self.percentile_span)
        check_number(owner, "elasticity", self.elasticity, lambda v: 0 < v < 1, "in (0, 1)")
        check_number(owner, "dither", self.dither, lambda v: 0 <= v <= 0.5, "in [0, 0.5]")
        check_int(owner, "fleet_size", self.fleet_size, minimum=1)


class Knee:
    """Baseline: at the first sample, and then every `probe_interval` seconds (jittered), the limit is
    pinned to `probe_limit`; the median RTT of the next `probe_samples` answers admitted under the pin
    becomes `min_rtt`, and the limit returns to its value before the probe. A baseline that rose (or the
    first one) is confirmed: probed again after `probe_confirm` seconds, and again while each probe
    finds less than the one before (at most MAX_CONFIRMS), and the lowest is kept. A probe sees the
    server's own RTT plus the queue of any other instance sharing it, so a late joiner's first probe
    overestimates the baseline, and in a fleet model a baseline 4 % too high took twice its share; each
    confirming probe comes after the others have cut for the excess, and sees less of their queue. A
    lower baseline needs no confirming (a queue only adds), nor does a window whose mean RTT is below
    `min_rtt`, which lowers it at once.

    Update, once per window of at least `window` seconds and `min_window_samples` answers:

        sample = mean RTT of the window's answers; g = clamp(min_gradient, max_gradient,
                 min_rtt * (1 + tolerance) / sample)
        a drop in the window:                 new = L * min_gradient
        server lag over the threshold:        new = L * min(g, threshold / lag)
        the p99 of the last second past slo:  new = L * max(min_gradient, slo / p99), and only answers
                                              sent after this cut count towards the next p99
        g < 1 (past the knee):                new = min(L, used) * g  (no headroom)
        the limit never reached (used < L):   new = L             (app-limited: an untested limit)
        else:                                 new = L * g + headroom * sqrt(L)

    where `used` is the most calls in flight in the window. Both rules matter in a fleet: an instance
    whose own load is below its limit must neither grow it nor keep it, or it holds a share it does not
    use and takes it all the moment its load rises (in the model fleet, one instance sat at twice its
    share while the others were pinned at their floor).

    Why these choices. Envoy adds sqrt(L) headroom to every update, so it settles at c (1 + tolerance)
    + sqrt(L): 65 % past a knee of 10 with its tolerance of 0.25. Here headroom is added only under the
    target, so the limit steps between c (1 + tolerance) and that plus the step, and the time average is
    about c (1 + tolerance) + headroom sqrt(L) / 2. Cuts are multiplicative and steps additive, so N
    instances sharing one server converge on equal shares (Chiu and Jain's AIMD argument) with no
    coordination: all see the same RTT, so all cut by the same factor, and the step closes the gaps.
    No smoothing: the gradient already lands on the knee in one update, and a smoothed cut held a limit
    twice the capacity for seconds when capacity halved (see `Gradient`).

    The throughput check (`dither` > 0, opt-in). On a soft knee the RTT grows from the first call, so the
    gradient above cuts far below the point where throughput stops growing (the lab's server: 3 in
    flight, 0.65 C). With the check, the limit alternates `base +- dither x base` window by window, the
    elasticity of throughput with concurrency is fitted through the last windows (`_measure`), and it
    steers instead of the gradient: `ln base += clamp(ELASTICITY_GAIN (e - elasticity), +- MAX_STEP x
    dither)`. In a fleet each instance sees 1/N of the queue its calls add, so the slope is scaled by
    `fleet_size` (docs/adaptive-limits.md, "A soft knee: the throughput check").
    """

    name = "knee"

    def __init__(self, config: KneeConfig | None = None, *, rng: random.Random | None = None) -> None:
        self.config = config or KneeConfig()
        cfg = self.config
        self.initial_limit = float(cfg.initial_limit)
        self.rng = rng or random.Random()
        self.min_rtt: float | None = None
        self.short_rtt: float | None = None  # of the last closed window, for display
        self.gradient: float | None = None  # of the last closed window, for display
        self.probing = False
        self.starting = True  # until the first cut, growth is multiplicative (TCP's slow start)
        self.probes = 0
        self._chain: list[float] = []  # the baselines of a run of confirming probes
        self._probe_started = 0.0
        self._probe_rtts: list[float] = []
        self._deferred_limit = self.initial_limit
        self._next_probe = -math.inf
        self._last_cut = -math.inf
        self.window = SampleWindow()
        self._length = cfg.window  # of the open window: jittered, so instances do not update in step
        self.tail = WindowedPercentile(cfg.percentile_span, cfg.quantile, cfg.min_window_samples)
        self.elasticity: float | None = None  # measured d ln(throughput) / d ln(in flight), fleet-scaled
        self.base: float | None = None  # the limit the dither swings around
        self._applied: float | None = None  # the limit last returned
        self._side = 1  # +1: this window runs above the base (by dither, at least one call); -1: below
        self._phase = _Phase()  # calls admitted since this window began (Little's law: n / RTT)
        self._points: deque[tuple[float, float]] = deque(maxlen=ELASTICITY_POINTS)  # (ln n, ln RTT)
        self._fresh = False  # the elasticity was measured at the close of this window

    def restart(self, now: float) -> None:
        """An outage ended (the policy may have restored the last good limit). A probe that was due, under
        way or being confirmed is dropped, and the next one comes a full interval later: the baseline
        from before the outage stands (an outage says nothing about the server's no-load RTT), a probe
        begun in it would pin the limit to `probe_limit` for its first answers after it, and one
        finished on those answers would see the restored limit's queue, read a baseline that rose, and
        pin the limit again `probe_confirm` later: 3-4 s of recovery lost on the lab's server."""
        self.window.restart(now)
        self.tail.clear()
        self._phase.restart(now)
        self._points.clear()
        self.probing = False
        self._probe_rtts = []
        self._chain = []
        wait = self.config.probe_interval if self.min_rtt is not None else self.config.probe_confirm
        self._next_probe = max(self._next_probe, now + self._jittered(wait))

    def update(self, limit: float, sample: Sample) -> float:
        if self.probing:
            return self._probe(limit, sample)
        if sample.at >= self._next_probe and not sample.dropped:  # a failing server has no baseline
            self.probing = True
            self._probe_started = sample.at
            self._probe_rtts = []
            self._deferred_limit = limit
            return float(max(self.config.min_limit, min(int(limit), self.config.probe_limit)))
        return self._window(limit, sample)

    def _jittered(self, seconds: float) -> float:
        return seconds * (1 + self.config.probe_jitter * self.rng.uniform(-1.0, 1.0))

    def _probe(self, limit: float, sample: Sample) -> float:
        cfg = self.config
        if sample.dropped or sample.at - sample.rtt < self._probe_started:
            return limit
        self._probe_rtts.append(sample.rtt)
        if len(self._probe_rtts) < cfg.probe_samples:
            return limit
        measured = statistics.median(self._probe_rtts)
        if self._chain:  # a confirmation: go on while it keeps falling, keep the lowest
            falling = measured < min(self._chain)
            self._chain.append(measured)
            confirm = falling and len(self._chain) <= MAX_CONFIRMS
        else:  # a baseline that rose (or the first) is confirmed; a lower one is taken as it is
            self._chain = [measured]
            confirm = self.min_rtt is None or measured > self.min_rtt
        self.min_rtt = min(self._chain)
        if not confirm:
            self._chain = []
        self.probes += 1
        self.probing = False
        self._next_probe = sample.at + self._jittered(cfg.probe_confirm if confirm else cfg.probe_interval)
        self.window.restart(sample.at)
        self._phase.restart(sample.at)
        return self._deferred_limit

    def _window(self, limit: float, sample: Sample) -> float:
        cfg, window, phase = self.config, self.window, self._phase
        if self.base is None or self._applied is None or limit != self._applied:
            self.base = limit  # first window, or the policy moved the limit (an outage's restore)
            self._points.clear()
        window.add(sample)
        phase.add(sample)
        if not sample.dropped and sample.at - sample.rtt >= self._last_cut:
            self.tail.add(sample.at, sample.rtt)
        lagging = window.lag_over(cfg.lag_threshold_ms)
        count = phase.count if cfg.dither > 0 else window.count
        length = self._length
        if cfg.dither > 0 and window.mean_rtt is not None:  # a side settles in one round trip: two
            length = max(length, 2 * window.mean_rtt)
        if sample.at - window.start < length or (  # type: ignore[operator]
            count < cfg.min_window_samples and not (window.dropped or lagging)
        ):
            return limit
        self._measure(limit)
        base = self._target(self.base, limit, sample.at, lagging)
        self.base = min(float(cfg.max_limit), max(float(cfg.min_limit), base))
        window.restart(sample.at)
        phase.restart(sample.at)
        self._length = self._jittered(cfg.window)
        self._side = -self._side
        swing = max(self.base * cfg.dither, 1.0) if cfg.dither > 0 else 0.0  # at least one call apart
        applied = self.base + self._side * swing
        self._applied = min(float(cfg.max_limit), max(float(cfg.min_limit), applied))
        return self._applied

    def _measure(self, applied: float) -> None:
        """Add this window's point to the last `ELASTICITY_POINTS`; with enough spread, update the
        elasticity from them.

        Little's law gives a window's throughput as n / RTT (the mean in flight over the mean RTT of the
        calls admitted in it), so the elasticity of throughput with concurrency is 1 - d ln RTT / d ln n,
        the slope fitted by least squares through the points: about 1 below a knee (more calls, the same
        RTT), about 0 past it (the RTT grows with the calls), in between on a soft knee. The dither makes
        the spread; a fit through several windows, not one pair, because one window's mean RTT on a busy
        machine moves by more than the difference between a soft knee's elasticity and its target."""
        cfg, phase, points = self.config, self._phase, self._points
        self._fresh = False
        if cfg.dither <= 0 or phase.count < cfg.min_window_samples or phase.rtt_sum <= 0:
            return
        points.append((math.log(phase.in_flight_sum / phase.count), math.log(phase.rtt_sum / phase.count)))
        if len(points) < ELASTICITY_POINTS:
            return
        mean_n = statistics.fmean(n for n, _ in points)
        mean_r = statistics.fmean(r for _, r in points)
        spread = sum((n - mean_n) ** 2 for n, _ in points)
        if spread < len(points) * (cfg.dither / 2) ** 2:  # too close together to tell: app-limited
            return
        own = sum((n - mean_n) * (r - mean_r) for n, r in points) / spread  # d ln RTT / d ln n
        self._fresh = True
        self.elasticity = max(-1.0, min(2.0, 1 - cfg.fleet_size * own))

    def _target(self, limit: float, applied: float, now: float, lagging: bool) -> float:
        """The next base limit, from the window that ran at `applied` (the base, dithered)."""
        cfg, window = self.config, self.window
        short = window.mean_rtt
        self.short_rtt = short
        if short is not None and short > 0 and self.min_rtt is not None and short < self.min_rtt:
            self.min_rtt = short  # a lower baseline seen under load: the probe overestimated it
        g = 1.0
        if short is not None and short > 0 and self.min_rtt is not None:
            g = max(cfg.min_gradient, min(cfg.max_gradient, self.min_rtt * (1 + cfg.tolerance) / short))
        self.gradient = g
        if window.dropped:
            return limit * cfg.min_gradient
        if lagging:
            return limit * min(g, max(cfg.min_gradient, cfg.lag_threshold_ms / window.max_lag))  # type: ignore[operator]
        tail = self.tail.value(now) if cfg.slo_target is not None else None
        if tail is not None and tail > cfg.slo_target:  # type: ignore[operator]
            self._last_cut = now
            self.tail.clear()
            return limit * max(cfg.min_gradient, cfg.slo_target / tail)  # type: ignore[operator]
        used = window.max_in_flight
        if self.elasticity is not None:  # measured: it steers, in proportion to its distance from the knee
            if not self._fresh or (used < int(applied) and self.elasticity >= cfg.elasticity):
                return limit  # nothing new, or app-limited: an untested limit neither grows nor is kept
            self.starting = False
            step = ELASTICITY_GAIN * (self.elasticity - cfg.elasticity)
            most = MAX_STEP * cfg.dither
            return limit * math.exp(max(-most, min(most, step)))
        if g < 1 and cfg.dither > 0:  # past min RTT, not measured yet: wait for the measurement
            return limit
        if g < 1:  # cut what is in use: a limit above it holds nothing back
            self.starting = False
            return min(limit, float(used)) * g if used < int(applied) else limit * g
        if used < int(applied) or short is None:
            return limit
        return (limit * g if self.starting else limit) + cfg.headroom * math.sqrt(limit)


class _Phase:
    """The calls admitted since a window began: how many answered, their in-flight and RTT sums."""

    def __init__(self) -> None:
        self.restart(-math.inf)

    def restart(self, now: float) -> None:
        self.start = now
        self.count = 0
        self.in_flight_sum = 0
        self.rtt_sum = 0.0

    def add(self, sample: Sample) -> None:
        if sample.dropped or sample.at - sample.rtt < self.start:
            return
        self.count += 1
        self.in_flight_sum += sample.in_flight
        self.rtt_sum += sample.rtt
