"""How busy the server is, measured the way toobusy-js does it, and the counters the seed logged.

toobusy wakes up every `interval`, measures how late it woke (`lag = max(0, elapsed - interval)`), and smooths
it as `current = s*lag + (1-s)*current` with s = 1/3. A loop that is blocked by CPU work wakes late, so the
lag is a direct measure of queueing inside the process. `shed_probability` is toobusy's `toobusy()`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields

import gevent


class LagSampler:
    """The smoothed event-loop lag of this process, in milliseconds."""

    def __init__(
        self, interval_ms: float, smoothing: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval_ms = interval_ms
        self.smoothing = smoothing
        self.clock = clock
        self.lag_ms = 0.0
        self.peak_ms = 0.0  # highest smoothed lag since start or the last reset
        self.samples = 0

    def record(self, elapsed_ms: float) -> float:
        """Fold one wake-up into the smoothed lag; returns the new value."""
        raw = max(0.0, elapsed_ms - self.interval_ms)
        self.lag_ms = self.smoothing * raw + (1 - self.smoothing) * self.lag_ms
        self.peak_ms = max(self.peak_ms, self.lag_ms)
        self.samples += 1
        return self.lag_ms

    def run(self) -> None:
        """Sample forever (run it in its own greenlet)."""
        loop = gevent.get_hub().loop
        while True:
            # libev caches "now" per loop iteration; without this the timer would start from a stale time
            # whenever the loop was blocked just before, and the lag would be under-measured.
            loop.update_now()
            start = self.clock()
            gevent.sleep(self.interval_ms / 1000)
            self.record((self.clock() - start) * 1000)


def shed_probability(lag_ms: float, max_lag_ms: float) -> float:
    """toobusy(): 0 at or below max_lag, rising linearly to 1 at twice max_lag."""
    if lag_ms <= max_lag_ms:
        return 0.0
    return min(1.0, (lag_ms - max_lag_ms) / max_lag_ms)


@dataclass
class Totals:
    """Monotonic counts since start or since the last /admin/reset (`epoch` counts the resets)."""

    requests: int = 0
    completed: int = 0
    rejected: int = 0
    errors: int = 0
    bad_requests: int = 0
    abandoned: int = 0  # the client hung up before the CPU work, which was skipped
    expired: int = 0  # its propagated deadline had passed (--drop-expired): a fast 504, no work
    # CPU time of the CPU-bound part of /doWork tasks, and the part of it spent for clients that had
    # already given up (deadline passed when the work finished, or the connection closed): ms.
    work_cpu_ms: float = 0.0
    wasted_cpu_ms: float = 0.0
    tasks_completed: int = 0
    sockets_accepted: int = 0
    sockets_closed: int = 0
    faulted: dict[str, int] = field(default_factory=dict)
    # Connections the server itself ended before a request reached the app, by reason (DROP_REASONS).
    dropped: dict[str, int] = field(default_factory=dict)
    # /doWork requests by their criticality (target_server/criticality.py), and how they ended:
    # {"critical": {"requests": n, "completed": n, "rejected": n}, ...}; a 400 is counted in none.
    by_criticality: dict[str, dict[str, int]] = field(default_factory=dict)

    def zero(self) -> None:
        for item in fields(self):
            empty = item.name in ("faulted", "dropped", "by_criticality")
            setattr(self, item.name, {} if empty else type(item.default)())

    def count_fault(self, kind: str) -> None:
        self.faulted[kind] = self.faulted.get(kind, 0) + 1

    def count_drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def count_criticality(self, criticality: str, ended: str) -> None:
        """One more request of `criticality` that `ended` (requests, completed or rejected)."""
        counts = self.by_criticality.setdefault(criticality, {})
        counts[ended] = counts.get(ended, 0) + 1


# Why the server ended a connection on its own (see target_server/connections.py).
DROP_REASONS = ("idle_timeout", "header_timeout", "evicted", "malformed", "too_large")


@dataclass
class Gauges:
    """Current values: requests and tasks in progress, and connections the server itself counted."""

    in_flight: int = 0
    concurrent: int = 0
    open_sockets: int = 0
    # Highest values since start or the last reset: a sampler polling /stats misses short peaks.
    peak_in_flight: int = 0
    peak_concurrent: int = 0
    peak_sockets: int = 0

    def enter_request(self) -> None:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def enter_task(self) -> None:
        self.concurrent += 1
        self.peak_concurrent = max(self.peak_concurrent, self.concurrent)

    def note_sockets(self, sockets: int) -> None:
        self.peak_sockets = max(self.peak_sockets, sockets)

    def restart_peaks(self, sockets: int) -> None:
        """Peaks start again from the current values (at a reset)."""
        self.peak_in_flight = self.in_flight
        self.peak_concurrent = self.concurrent
        self.peak_sockets = sockets


def busy_spin(milliseconds: float) -> None:
    """Burn CPU without yielding: the seed's synchronous work, which blocks the whole loop."""
    end = time.perf_counter() + milliseconds / 1000
    while time.perf_counter() < end:
        pass


def format_status(lag_ms: float, concurrent: int, completed: int, sockets: int, rejected: int | None) -> str:
    """The seed's status lines, indentation included. `rejected` is printed only when shedding is on."""
    lines = [
        f"lag: {round(lag_ms)}",
        f" concurrent: {concurrent}",
        f"  completed: {completed}",
        f"    sockets: {sockets}",
    ]
    if rejected is not None:
        lines.append(f"   rejected: {rejected}")
    return "\n".join(lines)
