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
    """

    def __init__(self, history: int = HISTORY_ROWS) -> None:
        self.history: deque[MitigationRow] = deque(maxlen=history)
        self.series = LimitSeries()
        self._latest: dict[str, dict[str, ClientSnapshot]] = {}
        self._rates: dict[tuple[str, str], Rates] = {}
        self._trails: dict[tuple[str, str], deque[ClientSnapshot]] = {}
        self._runs: dict[str, int] = {}
        self._stale_up_to: dict[str, int] = {}

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

    def update(self, worker: str, run: int, snapshots: Iterable[ClientSnapshot]) -> bool:
        """Take a report. Returns True when it changed any number (False too when it was stale)."""
        if run <= self._stale_up_to.get(worker, 0):
            return False
        if self._runs.get(worker) != run:
            self._latest[worker] = {}
            self._runs[worker] = run
        latest = self._latest.setdefault(worker, {})
        changed = False
        for snap in snapshots:
            previous = latest.get(snap.client)
            if previous is not None and snap.at <= previous.at:
                continue
            if previous is None or not previous.same_numbers(snap):
                changed = True
            trail = self._trails.setdefault((worker, snap.client), deque(maxlen=TRAIL))
            if previous is None:
                trail.clear()
            self._rates[(worker, snap.client)] = rates_between(rate_baseline(trail, snap.at), snap)
            trail.append(snap)
            latest[snap.client] = snap
        return changed

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
                per_worker.append(MitigationRow.of(timestamp, elapsed_s, worker, snap, rates))
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
