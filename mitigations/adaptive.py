"""Adaptive concurrency limit: an in-flight cap that finds its own number.

A fixed `MAX_CONCURRENT` needs somebody to guess the server's capacity, and is wrong as soon as the
capacity changes. `AdaptiveLimit` moves the cap from what it observes, with a pluggable algorithm:

- `Aimd` (loss-based, Netflix concurrency-limits `AIMDLimit`): cut on a drop, grow while the limit is used;
- `Gradient` (latency-based: Gradient2's smoothed update against Envoy's measured minimum RTT): shrink as
  the short-term RTT rises above the no-load RTT, grow by a little headroom while it does not.

Both read the server's `X-Server-Lag-Ms` header, when present, as an early congestion signal: the
server's own measure of how far its event loop is behind, which rises before anything fails.

What a sample is:
  - RTT runs from the moment the call was *admitted here* to its outcome. Not from launch (queueing in
    outer policies would pollute it) and not from arrival here (our own queue wait is not the server's).
    The pipeline puts retry outside the limiter, so each attempt is one sample and holds one slot.
  - A drop is any server failure (connect error, reset, timeout, 503, 5xx): the server did not cope.
    A 4xx is a normal answer. A call shed by an inner policy never reached the server: no sample.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from mitigations._checks import check_choice, check_int, check_seconds
from mitigations.admission import GatedPolicy
from mitigations.core import AdaptiveLimitRejected, Call, Next, Outcome

LAG_HEADER = "X-Server-Lag-Ms"

AdmissionMode = Literal["cancel", "queue"]
ADMISSION_MODES: tuple[AdmissionMode, ...] = ("cancel", "queue")


@dataclass(frozen=True)
class Sample:
    """What one finished call tells the algorithm."""

    at: float  # when the outcome arrived (clock seconds)
    rtt: float  # seconds from admission to outcome
    in_flight: int  # calls in flight when this one was admitted, itself included
    dropped: bool  # a server failure: the server did not cope
    lag_ms: float | None = None  # the server's X-Server-Lag-Ms, when the response carried it


class LimitAlgorithm(Protocol):
    """Turns samples into a new limit. Owned by one `AdaptiveLimit`; may keep state between samples."""

    name: str
    initial_limit: float

    def update(self, limit: float, sample: Sample) -> float:
        """The new limit after `sample`, already within the algorithm's bounds."""
        ...


def _check_number(owner: str, name: str, value: object, ok: Callable[[float], bool], allowed: str) -> None:
    """A real number (not a bool) for which `ok` holds; else one line naming the value and what is allowed."""
    is_number = isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)
    if not is_number or not ok(value):  # type: ignore[arg-type]
        raise ValueError(f"{owner}.{name} must be {allowed}, got {value!r}")


def _check_limits(owner: str, initial: int, low: int, high: int) -> None:
    check_int(owner, "min_limit", low, minimum=1)
    check_int(owner, "max_limit", high, minimum=low)
    check_int(owner, "initial_limit", initial, minimum=low)
    if initial > high:
        raise ValueError(f"{owner}.initial_limit must be an integer in [{low}, {high}], got {initial!r}")


def _check_lag_threshold(owner: str, value: float | None) -> None:
    if value is not None:
        _check_number(owner, "lag_threshold_ms", value, lambda v: 0 < v < math.inf, "> 0 ms, or None")


# -- AIMD ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AimdConfig:
    """Netflix AIMDLimit. Bounds default lower than Netflix's [20, 200]: the lab's server is one event
    loop that a handful of concurrent requests saturate. The floor of 3 is Envoy's min_concurrency: light
    load for such a server, and enough to carry traffic the moment an outage ends. `once_per_rtt`
    applies at most one increase and one decrease per round trip, as TCP does; False is Netflix's
    literal per-sample rule (see `Aimd`)."""

    initial_limit: int = 10
    min_limit: int = 3
    max_limit: int = 200
    backoff_ratio: float = 0.9
    rtt_timeout: float | None = 5.0  # an RTT longer than this counts as a drop (Netflix: timeout)
    lag_threshold_ms: float | None = 70.0  # the server's max_lag; lag above it counts as a drop
    once_per_rtt: bool = True

    def __post_init__(self) -> None:
        owner = "AimdConfig"
        _check_limits(owner, self.initial_limit, self.min_limit, self.max_limit)
        _check_number(owner, "backoff_ratio", self.backoff_ratio, lambda v: 0 < v < 1, "in (0, 1)")
        check_seconds(owner, "rtt_timeout", self.rtt_timeout, allow_none=True)
        _check_lag_threshold(owner, self.lag_threshold_ms)


class Aimd:
    """On a drop, an RTT over the timeout, or server lag over the threshold: `L = int(L * backoff_ratio)`.
    Otherwise, while at least half the limit is in use (`2 * in_flight >= L`): `L += 1`.
    Growth is gated on use so an idle client does not inflate a limit it never tested.

    With `once_per_rtt`, a sample only moves the limit if its call was admitted after the last move in
    the same direction (a cut also restarts growth). The lag header is a smoothed, server-wide value
    that every response in the same half second repeats, so Netflix's per-sample rule cuts the limit to
    its floor on one episode of lag and then regrows it by one per answer, i.e. doubling per RTT.
    In a model of the lab's server at 2x overload that halved goodput; once per RTT kept it near C.
    """

    name = "aimd"

    def __init__(self, config: AimdConfig | None = None) -> None:
        self.config = config or AimdConfig()
        self.initial_limit = float(self.config.initial_limit)
        self._last_cut = -math.inf
        self._last_growth = -math.inf

    def congested(self, sample: Sample) -> bool:
        cfg = self.config
        if sample.dropped:
            return True
        if cfg.rtt_timeout is not None and sample.rtt > cfg.rtt_timeout:
            return True
        return (
            cfg.lag_threshold_ms is not None
            and sample.lag_ms is not None
            and sample.lag_ms > cfg.lag_threshold_ms
        )

    def update(self, limit: float, sample: Sample) -> float:
        cfg = self.config
        admitted = sample.at - sample.rtt
        if self.congested(sample):
            if cfg.once_per_rtt and admitted < self._last_cut:
                return limit
            self._last_cut = self._last_growth = sample.at
            new = float(int(limit * cfg.backoff_ratio))
        elif 2 * sample.in_flight >= limit:
            if cfg.once_per_rtt and admitted < self._last_growth:
                return limit
            self._last_growth = sample.at
            new = limit + 1
        else:
            return limit
        return float(min(cfg.max_limit, max(cfg.min_limit, new)))


# -- Gradient ------------------------------------------------------------------------------------------------


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

    def __post_init__(self) -> None:
        owner = "GradientConfig"
        _check_limits(owner, self.initial_limit, self.min_limit, self.max_limit)
        _check_number(owner, "smoothing", self.smoothing, lambda v: 0 < v <= 1, "in (0, 1]")
        _check_number(owner, "rtt_tolerance", self.rtt_tolerance, lambda v: 1 <= v < math.inf, ">= 1")
        _check_number(owner, "min_gradient", self.min_gradient, lambda v: 0 < v < 1, "in (0, 1)")
        check_seconds(owner, "window", self.window)
        check_int(owner, "min_window_samples", self.min_window_samples, minimum=1)
        check_seconds(owner, "probe_interval", self.probe_interval)
        _check_number(owner, "probe_jitter", self.probe_jitter, lambda v: 0 <= v < 1, "in [0, 1)")
        check_int(owner, "probe_limit", self.probe_limit, minimum=1)
        check_int(owner, "probe_samples", self.probe_samples, minimum=1)
        _check_lag_threshold(owner, self.lag_threshold_ms)


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
        self.window_start: float | None = None
        self._reset_window()

    def _reset_window(self) -> None:
        self._count = 0
        self._rtt_sum = 0.0
        self._answered = 0
        self._dropped = False
        self._max_lag: float | None = None
        self._max_in_flight = 0

    def update(self, limit: float, sample: Sample) -> float:
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
        self.window_start = sample.at
        self._reset_window()
        return self._deferred_limit

    def _window(self, limit: float, sample: Sample) -> float:
        cfg = self.config
        if self.window_start is None:
            self.window_start = sample.at
        self._count += 1
        self._max_in_flight = max(self._max_in_flight, sample.in_flight)
        if sample.dropped:
            self._dropped = True
        else:
            self._answered += 1
            self._rtt_sum += sample.rtt
        if sample.lag_ms is not None:
            self._max_lag = sample.lag_ms if self._max_lag is None else max(self._max_lag, sample.lag_ms)

        lag_gradient = None
        if (
            cfg.lag_threshold_ms is not None
            and self._max_lag is not None
            and self._max_lag > cfg.lag_threshold_ms
        ):
            lag_gradient = max(cfg.min_gradient, cfg.lag_threshold_ms / self._max_lag)
        congested = self._dropped or lag_gradient is not None
        if sample.at - self.window_start < cfg.window or (
            self._count < cfg.min_window_samples and not congested
        ):
            return limit

        short = self._rtt_sum / self._answered if self._answered else None
        self.short_rtt = short
        rtt_gradient = 1.0
        if short is not None and short > 0 and self.min_rtt is not None:
            rtt_gradient = max(cfg.min_gradient, min(1.0, cfg.rtt_tolerance * self.min_rtt / short))
        if self._dropped:
            target = limit * min(cfg.min_gradient, rtt_gradient)
        elif lag_gradient is not None:
            target = limit * min(lag_gradient, rtt_gradient)
        elif 2 * self._max_in_flight < limit:
            target = limit
        else:
            target = limit * rtt_gradient + math.sqrt(limit)
        self.window_start = sample.at
        self._reset_window()
        new = (1 - cfg.smoothing) * limit + cfg.smoothing * target
        return min(float(cfg.max_limit), max(float(cfg.min_limit), new))


ALGORITHMS: dict[str, Callable[[], LimitAlgorithm]] = {"aimd": Aimd, "gradient": Gradient}


# -- the policy ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdaptiveLimitConfig:
    """Calls over the limit are shed at once (`cancel`) or, in `queue` mode, wait in a FIFO queue of at
    most `queue_size` for at most `queue_timeout` seconds, and never past their own deadline. The words
    match `ThrottleConfig`; the default wait is short because the limit already holds the backlog."""

    mode: AdmissionMode = "cancel"
    queue_size: int = 100
    queue_timeout: float = 0.05

    def __post_init__(self) -> None:
        check_choice("AdaptiveLimitConfig", "mode", self.mode, ADMISSION_MODES)
        check_int("AdaptiveLimitConfig", "queue_size", self.queue_size, minimum=1)
        check_seconds("AdaptiveLimitConfig", "queue_timeout", self.queue_timeout)


def parse_lag(value: str | None) -> float | None:
    """The lag header in milliseconds, or None when absent or not a finite non-negative number."""
    if value is None:
        return None
    try:
        lag = float(value)
    except ValueError:
        return None
    return lag if math.isfinite(lag) and lag >= 0 else None


class AdaptiveLimit(GatedPolicy):
    """An in-flight cap whose value an algorithm moves (see the module doc for what a sample is).

    Gauges: `limit` (int), `in_flight`, `queued`, `lag_ms` (last header seen). Counters: `admitted`,
    `rejected` (AdaptiveLimitRejected: over the limit, queue full, or queue wait ran out), `expired`
    (QueuedPastDeadline: the call's deadline ran out in the queue), `samples`, `drops`.
    Emits `limit(self, value)` whenever the integer limit changes.
    """

    name = "adaptive"
    rejection = AdaptiveLimitRejected

    def __init__(
        self, algorithm: LimitAlgorithm | None = None, config: AdaptiveLimitConfig | None = None
    ) -> None:
        self.algorithm: LimitAlgorithm = algorithm or Aimd()
        self.config = config or AdaptiveLimitConfig()
        self.estimate = self.algorithm.initial_limit
        super().__init__(self.limit, self.config.queue_size if self.config.mode == "queue" else 0)
        self.samples = 0
        self.drops = 0
        self.lag_ms: float | None = None

    @property
    def limit(self) -> int:
        return max(1, int(self.estimate))

    @property
    def in_flight(self) -> int:
        return self.gate.in_use

    @property
    def queued(self) -> int:
        return self.gate.waiting

    def execute(self, call: Call, proceed: Next) -> Outcome:
        queue = self.config.mode == "queue"
        refusal = self.admit(call, queue=queue, queue_timeout=self.config.queue_timeout)
        if refusal is not None:
            return refusal
        in_flight = self.gate.in_use
        started = self.clock.now()
        try:
            outcome = proceed(call)
        except BaseException:
            self.gate.leave()
            raise
        try:
            self._observe(outcome, started, in_flight)
        finally:
            self.gate.leave()
        return outcome

    def _observe(self, outcome: Outcome, started: float, in_flight: int) -> None:
        if outcome.shed:
            return
        lag = parse_lag(outcome.header(LAG_HEADER))
        if lag is not None:
            self.lag_ms = lag
        dropped = outcome.is_server_failure
        self.samples += 1
        self.drops += dropped
        sample = Sample(
            at=outcome.finished_at,
            rtt=max(0.0, outcome.finished_at - started),
            in_flight=in_flight,
            dropped=dropped,
            lag_ms=lag,
        )
        self.set_estimate(self.algorithm.update(self.estimate, sample))

    def set_estimate(self, value: float) -> None:
        """Move the limit; if its integer value changed, resize the gate (admitting waiters if it grew)
        and announce it."""
        old = self.limit
        self.estimate = value
        if self.limit != old:
            self.gate.set_limit(self.limit)
            self.events.emit("limit", self, self.limit)
