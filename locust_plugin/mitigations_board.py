"""The master's board: the latest numbers of every worker and client (or of the single local process).

It keeps each worker's latest snapshot per client, works out the rates between a worker's consecutive
snapshots (`client_rates`), and adds the summed `all` rows (`mitigation_rows.sum_rows`). Its `history`
feeds the web UI's Mitigations tab and its download; `monitoring` appends each sample to
PREFIX_mitigations.csv. Its `series` keeps the last 30 s of each row's limit, in flight, goodput and shed
for the tab's trends (`limit_series`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import replace

from locust_plugin.client_rates import Rates, rate_baseline, rates_between
from locust_plugin.client_stats import ClientSnapshot
from locust_plugin.limit_series import LimitSeries
from locust_plugin.mitigation_rows import MitigationRow, sum_rows

TRAIL = 64
HISTORY_ROWS = 20_000


class MitigationsBoard:
    """The latest numbers of every worker and client, on the master (or the single local process).

    `update(worker, run, snapshots)` takes a worker's report; `rows(...)` is one complete sample: a row
    per worker per client, then one `all` row per client. `begin_test` forgets the last test and ignores
    late reports from it (a report carries the worker's test number, `run`).

    Snapshots are cumulative (the worker's totals since its test started), so a worker's latest one
    *replaces* its earlier ones, whenever and however often it arrives. `lose(worker, elapsed_s)` marks
    a worker the master stopped hearing from: its rows keep its last numbers, with what it had in
    flight then moved to `lost_with_worker` (`MitigationRow.lost_at`). A lost worker that reports again
    is back: its new totals replace the old, and nothing of it is counted lost any more, so a worker
    cut off and reconnected is never counted twice.

    Clocks: a snapshot's `at` and its breaker transitions are on the worker's wall clock. Rates only
    subtract two `at` of one worker (its offset cancels). Transitions are shown and merged beside the
    master's time, so with `received_at` (the master's clock when the report came) they are moved onto
    it by the smallest `received_at - at` seen from that worker this test: its clock offset plus the
    quickest delivery, never a report that sat in a socket while a link was down.
    """

    def __init__(self, history: int = HISTORY_ROWS) -> None:
        self.history: deque[MitigationRow] = deque(maxlen=history)
        self.series = LimitSeries()
        self._latest: dict[str, dict[str, ClientSnapshot]] = {}
        self._rates: dict[tuple[str, str], Rates] = {}
        self._trails: dict[tuple[str, str], deque[ClientSnapshot]] = {}
        self._runs: dict[str, int] = {}
        self._stale_up_to: dict[str, int] = {}
        self.lost: dict[str, float] = {}  # worker -> elapsed_s when the master lost it, this test
        self._offsets: dict[str, float] = {}  # worker -> smallest received_at - at, this test

    @property
    def workers(self) -> list[str]:
        return sorted(self._latest)

    def begin_test(self) -> None:
        self._stale_up_to = dict(self._runs)
        self._latest.clear()
        self._rates.clear()
        self._trails.clear()
        self.history.clear()
        self.series.clear()
        self.lost.clear()
        self._offsets.clear()

    def lose(self, worker: str, elapsed_s: float) -> int | None:
        """Mark `worker` lost at `elapsed_s` (seconds since the test started). Returns the calls it had
        in flight or pending at its last report (now `lost_with_worker`), or None when it has no numbers
        in this test or is already lost."""
        latest = self._latest.get(worker)
        if not latest or worker in self.lost:
            return None
        self.lost[worker] = elapsed_s
        return sum(snap.concurrent + snap.pending for snap in latest.values())

    def update(
        self, worker: str, run: int, snapshots: Iterable[ClientSnapshot], received_at: float | None = None
    ) -> bool:
        """Take a report (`received_at`: the master's wall clock, for a worker's report). Returns True when
        it changed any number (False too when it was stale)."""
        if run <= self._stale_up_to.get(worker, 0):
            return False
        if self._runs.get(worker) != run:
            self._latest[worker] = {}
            self._runs[worker] = run
        latest = self._latest.setdefault(worker, {})
        changed = self.lost.pop(worker, None) is not None  # it reported again: back, numbers replaced
        for snap in snapshots:
            previous = latest.get(snap.client)
            if previous is not None and snap.at <= previous.at:
                continue
            if received_at is not None:
                snap = self._on_master_clock(worker, snap, received_at)
            if previous is None or not previous.same_numbers(snap):
                changed = True
            trail = self._trails.setdefault((worker, snap.client), deque(maxlen=TRAIL))
            if previous is None:
                trail.clear()
            self._rates[(worker, snap.client)] = rates_between(rate_baseline(trail, snap.at), snap)
            trail.append(snap)
            latest[snap.client] = snap
        return changed

    def _on_master_clock(self, worker: str, snap: ClientSnapshot, received_at: float) -> ClientSnapshot:
        offset = min(self._offsets.get(worker, received_at - snap.at), received_at - snap.at)
        self._offsets[worker] = offset
        if not snap.recent_transitions:
            return snap
        moved = tuple((round(at + offset, 3), old, new) for at, old, new in snap.recent_transitions)
        return replace(snap, recent_transitions=moved)

    def rows(self, timestamp: float, elapsed_s: float) -> list[MitigationRow]:
        """One sample of every worker's latest numbers, and the sums. Also kept in `history`. Each sample
        gets its own timestamp (a millisecond later than the last if need be), so readers can group by it."""
        timestamp, elapsed_s = round(timestamp, 3), round(max(0.0, elapsed_s), 3)
        if self.history and timestamp <= self.history[-1].timestamp:
            bump = round(self.history[-1].timestamp + 0.001 - timestamp, 3)
            timestamp, elapsed_s = round(timestamp + bump, 3), round(elapsed_s + bump, 3)
        per_worker: list[MitigationRow] = []
        for worker in sorted(self._latest):
            for client in sorted(self._latest[worker]):
                snap = self._latest[worker][client]
                rates = self._rates.get((worker, client), Rates())
                row = MitigationRow.of(timestamp, elapsed_s, worker, snap, rates)
                lost_at = self.lost.get(worker)
                per_worker.append(row if lost_at is None else row.lost_at(lost_at))
        by_client: dict[str, list[MitigationRow]] = {}
        for row in per_worker:
            by_client.setdefault(row.client, []).append(row)
        summed = [sum_rows(by_client[client], timestamp, elapsed_s) for client in sorted(by_client)]
        rows = per_worker + summed
        self.history.extend(rows)
        self.series.add(rows)
        return rows

    def latest_rows(self) -> list[MitigationRow]:
        """The most recent complete sample from `history` (empty before the first)."""
        if not self.history:
            return []
        last = self.history[-1].timestamp
        found = []
        for row in reversed(self.history):
            if row.timestamp != last:
                break
            found.append(row)
        return list(reversed(found))
