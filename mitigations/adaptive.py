"""Adaptive concurrency limit: an in-flight cap that finds its own number.

A fixed `MAX_CONCURRENT` needs somebody to guess the server's capacity, and is wrong as soon as the
capacity changes. `AdaptiveLimit` moves the cap from what it observes, with a pluggable algorithm:

- `Aimd` (loss-based, Netflix concurrency-limits `AIMDLimit`): cut on a drop, grow while the limit is used;
- `Gradient` (latency-based: Gradient2's smoothed update against Envoy's measured minimum RTT): shrink as
  the short-term RTT rises above the no-load RTT, grow by a little headroom while it does not
  (`mitigations/adaptive_gradient.py`);
- `Vegas` (Netflix `VegasLimit`): a queue-size estimate from the fastest answer
  (`mitigations/adaptive_vegas.py`);
- `Knee` (Envoy's adaptive concurrency): settles where throughput stops growing with concurrency, the
  RTT against a re-measured minimum, with the SLO as a ceiling (`mitigations/adaptive_knee.py`).

Given an SLO target (`slo_target`, AdaptiveClient's `--slo-ms` times `--adaptive-slo-share`), each also
treats a tail heading past it as congestion: Gradient and Vegas hold a windowed p99 under it, AIMD counts
an answer slower than it as a drop, Knee cuts at once when the windowed p99 passes it (a ceiling, never
the target).

All read the server's `X-Server-Lag-Ms` header, when present, as an early congestion signal: the
server's own measure of how far its event loop is behind, which rises before anything fails.

What a sample is:
  - RTT runs from the moment the call was *admitted here* to its outcome. Not from launch (queueing in
    outer policies would pollute it) and not from arrival here (our own queue wait is not the server's).
    The pipeline puts retry outside the limiter, so each attempt is one sample and holds one slot.
  - A drop is any server failure (connect error, reset, timeout, 503, 5xx): the server did not cope;
    except a failure that cost the server nothing (a refused connect, an immediate 503), which is no
    sample at all (see `AdaptiveLimit`). A 4xx is a normal answer. A call shed by an inner policy never
    reached the server: no sample.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from mitigations._checks import check_choice, check_int, check_seconds
from mitigations.adaptive_base import (
    LimitAlgorithm,
    OutageMemory,
    Sample,
    check_lag_threshold,
    check_limits,
    check_number,
    check_slo_target,
    is_free_failure,
)
from mitigations.adaptive_gradient import Gradient, GradientConfig
from mitigations.adaptive_knee import Knee, KneeConfig
from mitigations.adaptive_vegas import Vegas, VegasConfig
from mitigations.admission import GatedPolicy
from mitigations.core import AdaptiveLimitRejected, Call, Gauges, Next, Outcome

__all__ = [  # the algorithms live in their own modules; callers import them all from here
    "ALGORITHMS", "AdaptiveLimit", "AdaptiveLimitConfig", "Aimd", "AimdConfig", "Gradient",
    "GradientConfig", "Knee", "KneeConfig", "LimitAlgorithm", "Sample", "Vegas", "VegasConfig", "parse_lag",
]  # fmt: skip

LAG_HEADER = "X-Server-Lag-Ms"

AdmissionMode = Literal["cancel", "queue"]
ADMISSION_MODES: tuple[AdmissionMode, ...] = ("cancel", "queue")


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
    slo_target: float | None = None  # seconds: an RTT over this counts as a drop (the SLO's share)

    def __post_init__(self) -> None:
        owner = "AimdConfig"
        check_limits(owner, self.initial_limit, self.min_limit, self.max_limit)
        check_number(owner, "backoff_ratio", self.backoff_ratio, lambda v: 0 < v < 1, "in (0, 1)")
        check_seconds(owner, "rtt_timeout", self.rtt_timeout, allow_none=True)
        check_lag_threshold(owner, self.lag_threshold_ms)
        check_slo_target(owner, self.slo_target)


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
        if cfg.slo_target is not None and sample.rtt > cfg.slo_target:
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

    def restart(self, now: float) -> None:
        self._last_cut = self._last_growth = now


ALGORITHMS: dict[str, Callable[[], LimitAlgorithm]] = {
    "aimd": Aimd, "gradient": Gradient, "knee": Knee, "vegas": Vegas,
}  # fmt: skip


# -- the policy ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdaptiveLimitConfig:
    """Calls over the limit are shed at once (`cancel`) or, in `queue` mode, wait in a FIFO queue of at
    most `queue_size` for at most `queue_timeout` seconds, and never past their own deadline. The words
    match `ThrottleConfig`; the default wait is short because the limit already holds the backlog."""

    mode: AdmissionMode = "cancel"
    queue_size: int = 100
    queue_timeout: float = 0.05
    outage_after: float = 1.0  # seconds of failures with no answer that make an outage (OutageMemory)

    def __post_init__(self) -> None:
        check_choice("AdaptiveLimitConfig", "mode", self.mode, ADMISSION_MODES)
        check_int("AdaptiveLimitConfig", "queue_size", self.queue_size, minimum=1)
        check_seconds("AdaptiveLimitConfig", "queue_timeout", self.queue_timeout)
        check_seconds("AdaptiveLimitConfig", "outage_after", self.outage_after)


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

    Gauges: `limit` (int), `in_flight`, `queued` (`GatedPolicy`), `lag_ms` (last header seen).
    Counters: `admitted`, `rejected` (AdaptiveLimitRejected: over the limit, queue full, or queue wait
    ran out), `expired` (QueuedPastDeadline: the call's deadline ran out in the queue), `samples`,
    `drops`, `free_failures` (server failures that cost the server nothing: not samples), `restores`
    (outages that ended).
    Emits `limit(self, value)` whenever the integer limit changes.

    Fast recovery, two rules (docs/adaptive-limits.md):
      - a failure that cost the server nothing (`is_free_failure`: a refused connect, an error answered
        faster than half the fastest real answer) is not congestion and not a sample: an outage of
        immediate 503s leaves the limit where it was, so it carries traffic the moment the server is back;
      - when the limit was cut anyway (slow failures: timeouts, a hang), the first answer after an
        outage restores the last good limit (`OutageMemory`) instead of regrowing from the floor.
    Either way the first answer after an outage restarts the algorithm (`restart`): its window, and
    for the knee a min-RTT probe that fell due in the outage, belong to the outage.
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
        self.free_failures = 0
        self.fastest_ok: float | None = None
        self.memory = OutageMemory(self.config.outage_after)
        self.lag_ms: float | None = None

    @property
    def restores(self) -> int:
        return self.memory.restores

    @property
    def limit(self) -> int:
        return max(1, int(self.estimate))

    def gauges(self, wall_now: float) -> Gauges:
        return {**super().gauges(wall_now), "limit": self.limit}

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
        now = outcome.finished_at
        rtt = max(0.0, now - started)
        dropped = outcome.is_server_failure
        if dropped:
            self.memory.failed(now)
            if is_free_failure(outcome, rtt, self.fastest_ok):
                self.free_failures += 1
                return
        else:
            if outcome.ok and (self.fastest_ok is None or 0 < rtt < self.fastest_ok):
                self.fastest_ok = rtt
            restore = self.memory.answered(now, self.estimate)
            if self.memory.ended:  # what the algorithm's window saw belongs to the outage
                self.algorithm.restart(now)
            if restore is not None:
                self.set_estimate(restore)
                return
        self.samples += 1
        self.drops += dropped
        sample = Sample(at=now, rtt=rtt, in_flight=in_flight, dropped=dropped, lag_ms=lag)
        self.set_estimate(self.algorithm.update(self.estimate, sample))

    def set_estimate(self, value: float) -> None:
        """Move the limit; if its integer value changed, resize the gate (admitting waiters if it grew)
        and announce it."""
        old = self.limit
        self.estimate = value
        if self.limit != old:
            self.gate.set_limit(self.limit)
            self.events.emit("limit", self, self.limit)
