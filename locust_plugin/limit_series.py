"""The Mitigations tab's last 30 s: per client and per worker, the limit, the calls in flight, SLO goodput/s
and shed/s, so a user tuning a limiter can watch it find the knee (issue 20).

The board hands every sample it writes (`MitigationsBoard.rows`) to `LimitSeries.add`: every
`--server-sample-ms` in one process, and per batch of worker reports on a master (about once a second
per worker). Each row becomes one small `Point` in the ring of its (client, worker); a ring forgets
points more than `window_s` older than the newest sample, so it is bounded by time, and by `max_points`
whatever the sampling rate. The clock is the rows' own timestamps: nothing here reads the time, and
nothing here runs per call.

The rates are the board's (`client_rates`, from a worker's consecutive snapshots on the worker's clock),
so a per-worker series is right even when its reports arrive late; an `all` row sums the workers'.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from locust_plugin.mitigation_rows import MitigationRow

WINDOW_S = 30.0
MAX_POINTS = 1024  # 30 s at 34 samples/s: a master with many workers, each reporting once a second

Key = tuple[str, str]  # (client, worker)


@dataclass(frozen=True)
class Point:
    """One sample of one client in one worker (or `all`). `in_flight` is the throttle's own count when
    the client has one (the number its cap caps), else the calls the client has out less those waiting
    in a limiter's queue: for an adaptive limit, which reports no count of its own, the calls it let by."""

    at: float
    limit: int | None
    in_flight: int
    goodput_per_s: float | None
    shed_per_s: float | None

    @classmethod
    def of(cls, row: MitigationRow) -> Point:
        in_flight = row.throttle_in_flight
        if in_flight is None:
            in_flight = max(0, row.concurrent - (row.queue_depth or 0))
        return cls(row.timestamp, row.limit, in_flight, row.slo_ok_per_s, row.shed_per_s)


@dataclass(frozen=True)
class SeriesWindow:
    """How much a ring keeps: `window_s` seconds back from the newest sample, and `max_points` at most."""

    window_s: float = WINDOW_S
    max_points: int = MAX_POINTS

    def __post_init__(self) -> None:
        if not 0 < self.window_s <= 3600:
            raise ValueError(f"window_s must be from 0 to 3600 s, got {self.window_s!r}")
        if not 2 <= self.max_points <= 100_000:
            raise ValueError(f"max_points must be from 2 to 100,000, got {self.max_points!r}")


class LimitSeries:
    """A bounded ring of `Point`s per (client, worker). `clear` at every test start."""

    def __init__(self, window: SeriesWindow | None = None) -> None:
        self.window = window or SeriesWindow()
        self._rings: dict[Key, deque[Point]] = {}
        self.newest: float | None = None

    def clear(self) -> None:
        self._rings.clear()
        self.newest = None

    def add(self, rows: Iterable[MitigationRow]) -> None:
        """One sample's rows (every worker's and the `all` sums); then forget what is out of the window,
        in every ring, so a worker that stopped reporting fades out with its last 30 s."""
        for row in rows:
            ring = self._rings.get((row.client, row.worker))
            if ring is None:
                ring = self._rings[(row.client, row.worker)] = deque(maxlen=self.window.max_points)
            ring.append(Point.of(row))
            if self.newest is None or row.timestamp > self.newest:
                self.newest = row.timestamp
        if self.newest is None:
            return
        since = self.newest - self.window.window_s
        for key in list(self._rings):
            ring = self._rings[key]
            while ring and ring[0].at < since:
                ring.popleft()
            if not ring:
                del self._rings[key]

    def series(self) -> dict[Key, list[Point]]:
        """Every ring, oldest point first, by (client, worker)."""
        return {key: list(self._rings[key]) for key in sorted(self._rings)}
