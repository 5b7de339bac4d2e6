"""What every adaptive-limit algorithm shares: the sample, the algorithm protocol, a windowed percentile
of RTTs, which failures are congestion, and the memory that brings a limit back after an outage.

Anchors: Netflix concurrency-limits (a `Limit` turns samples into a limit; a drop is congestion) and
Envoy's adaptive concurrency filter (a limit pinned low is re-measured, not trusted). See
docs/adaptive-limits.md for the measurements behind the choices.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from mitigations._checks import check_int
from mitigations.core import ConnectRefused, Outcome

# A failure answered faster than this share of the fastest answer ever seen did no work on the server.
FREE_FAILURE_SHARE = 0.5


@dataclass(frozen=True)
class Sample:
    """What one finished call tells the algorithm."""

    at: float  # when the outcome arrived (clock seconds)
    rtt: float  # seconds from admission to outcome
    in_flight: int  # calls in flight when this one was admitted, itself included
    dropped: bool  # a server failure that is congestion: the server did not cope
    lag_ms: float | None = None  # the server's X-Server-Lag-Ms, when the response carried it


class LimitAlgorithm(Protocol):
    """Turns samples into a new limit. Owned by one `AdaptiveLimit`; may keep state between samples."""

    name: str
    initial_limit: float

    def update(self, limit: float, sample: Sample) -> float:
        """The new limit after `sample`, already within the algorithm's bounds."""
        ...

    def restart(self, now: float) -> None:
        """Forget the current window: an outage just ended (the policy may have restored the limit),
        and what the window saw before belongs to the outage."""
        ...


def check_number(owner: str, name: str, value: object, ok: Callable[[float], bool], allowed: str) -> None:
    """A real number (not a bool) for which `ok` holds; else one line naming the value and what is allowed."""
    is_number = isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)
    if not is_number or not ok(value):  # type: ignore[arg-type]
        raise ValueError(f"{owner}.{name} must be {allowed}, got {value!r}")


def check_limits(owner: str, initial: int, low: int, high: int) -> None:
    check_int(owner, "min_limit", low, minimum=1)
    check_int(owner, "max_limit", high, minimum=low)
    check_int(owner, "initial_limit", initial, minimum=low)
    if initial > high:
        raise ValueError(f"{owner}.initial_limit must be an integer in [{low}, {high}], got {initial!r}")


def check_lag_threshold(owner: str, value: float | None) -> None:
    if value is not None:
        check_number(owner, "lag_threshold_ms", value, lambda v: 0 < v < math.inf, "> 0 ms, or None")


def check_slo_target(owner: str, value: float | None) -> None:
    if value is not None:
        check_number(owner, "slo_target", value, lambda v: 0 < v < math.inf, "> 0 s, or None")


class SampleWindow:
    """The samples of one update window, as gradient and Vegas both judge them when it closes: how
    many, how many answered and their RTT sum, whether any was a drop, the highest lag and in-flight
    count seen. `restart(now)` opens the next window (after an update, a probe or an outage)."""

    def __init__(self) -> None:
        self.start: float | None = None
        self.clear()

    def clear(self) -> None:
        self.count = 0
        self.answered = 0
        self.rtt_sum = 0.0
        self.dropped = False
        self.max_lag: float | None = None
        self.max_in_flight = 0
        self.in_flight_sum = 0

    def restart(self, now: float) -> None:
        self.start = now
        self.clear()

    def add(self, sample: Sample) -> None:
        if self.start is None:
            self.start = sample.at
        self.count += 1
        self.max_in_flight = max(self.max_in_flight, sample.in_flight)
        self.in_flight_sum += sample.in_flight
        if sample.dropped:
            self.dropped = True
        else:
            self.answered += 1
            self.rtt_sum += sample.rtt
        if sample.lag_ms is not None:
            self.max_lag = sample.lag_ms if self.max_lag is None else max(self.max_lag, sample.lag_ms)

    @property
    def mean_rtt(self) -> float | None:
        return self.rtt_sum / self.answered if self.answered else None

    def lag_over(self, threshold_ms: float | None) -> bool:
        return threshold_ms is not None and self.max_lag is not None and self.max_lag > threshold_ms

    def open_at(self, now: float, length: float, min_samples: int, congested: bool) -> bool:
        """Still collecting: shorter than `length`, or too few samples to judge unless congested."""
        assert self.start is not None
        return now - self.start < length or (self.count < min_samples and not congested)


class WindowedPercentile:
    """A percentile of the RTTs answered in the last `span` seconds.

    Why not a mean: an SLO is a tail promise. A window of 20 answers at 40 ms and one at 900 ms has a
    mean of 80 ms and a p99 of 900 ms; the mean calls that healthy while the SLO is being missed.
    """

    def __init__(self, span: float, quantile: float, min_samples: int) -> None:
        self.span = span
        self.quantile = quantile
        self.min_samples = min_samples
        self._samples: deque[tuple[float, float]] = deque()

    def add(self, at: float, rtt: float) -> None:
        self._samples.append((at, rtt))
        self._expire(at)

    def _expire(self, now: float) -> None:
        while self._samples and self._samples[0][0] < now - self.span:
            self._samples.popleft()

    def value(self, now: float) -> float | None:
        """The percentile (nearest rank) of the last `span` seconds; None with fewer than `min_samples`."""
        self._expire(now)
        if len(self._samples) < self.min_samples:
            return None
        ordered = sorted(rtt for _, rtt in self._samples)
        rank = max(0, math.ceil(self.quantile * len(ordered)) - 1)
        return ordered[rank]

    def clear(self) -> None:
        self._samples.clear()


def is_free_failure(outcome: Outcome, rtt: float, fastest_ok: float | None) -> bool:
    """A server failure that cost the server nothing, so it says nothing about congestion: a refused
    connect (nobody listening), or an HTTP error (5xx, 429) answered in less than half the time of the
    fastest real answer, i.e. before the server could have done the work (an outage's immediate 503).
    Before any answer has arrived, every such error counts as free: nothing shows the server is busy.
    A slow 503 (HAProxy after its queue timeout) or a connect timeout (a full accept queue) is congestion.
    """
    if isinstance(outcome.error, ConnectRefused):
        return True
    status = outcome.status
    if status is None or not (status >= 500 or status == 429):
        return False
    return fastest_ok is None or rtt < FREE_FAILURE_SHARE * fastest_ok


class OutageMemory:
    """The last good limit, and when an outage ends.

    An outage is at least `outage_after` seconds in which calls failed and none was answered. Its first
    answer restores the limit the policy had at the last answer before it (never lowering the current
    one), instead of letting the algorithm regrow from its floor: a limit cut by failures that all came
    from a server that was down measured nothing about its capacity. Under overload some calls are still
    answered, so overload never counts as an outage and its cuts stand.
    """

    def __init__(self, outage_after: float) -> None:
        self.outage_after = outage_after
        self.good_limit: float | None = None
        self.last_ok_at: float | None = None
        self.failing_since: float | None = None
        self.restores = 0
        self.ended = False  # the last answer ended an outage (restored or not: an algorithm restarts)

    def failed(self, now: float) -> None:
        if self.failing_since is None:
            self.failing_since = now

    def answered(self, now: float, limit: float) -> float | None:
        """Record an answer; return the limit to restore when it ends an outage, else None."""
        restore = None
        started = self.failing_since  # the first failure since the last answer
        outage = started is not None and now - started >= self.outage_after
        self.ended = outage
        if outage and self.good_limit is not None and self.good_limit > limit:
            restore = self.good_limit
            self.restores += 1
        self.failing_since = None
        self.last_ok_at = now
        self.good_limit = max(limit, restore or 0.0)
        return restore
