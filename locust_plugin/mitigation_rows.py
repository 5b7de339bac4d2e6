"""The rows of PREFIX_mitigations.csv and the Mitigations tab: one per worker per client, and the sums.

Columns and their meanings: `mitigations.csv_schema.MITIGATION_COLUMNS`. A `MitigationRow` is a
snapshot (`client_stats.ClientSnapshot`) with its rates, under the CSV's names; `sum_rows` is a client's
`all` row: counters and gauges summed over the workers, histograms merged (never percentiles averaged).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from typing import Any

from locust_plugin.client_rates import Rates
from locust_plugin.client_stats import ClientSnapshot
from locust_plugin.ledger import LatencySummary, encode_histogram, merge_encoded
from mitigations.csv_schema import (
    ALL_WORKERS,
    CRITICALITY_COLUMNS,
    LATENCY_COLUMNS,
    MITIGATION_COLUMNS,
)

RECENT_TRANSITIONS = 3


def join_counts(counts: Mapping[str, int]) -> str:
    """`{"throttle": 12, "circuit-open": 3}` → `circuit-open=3;throttle=12` (sorted, zeros left out)."""
    return ";".join(f"{key}={counts[key]}" for key in sorted(counts) if counts[key])


@dataclass(frozen=True)
class MitigationRow:
    """One CSV row (columns in `mitigations.csv_schema`), plus `failures_by_kind`, `recent_transitions`
    and the two histograms for the web UI and the sums. Fields are named as the columns, so a policy's
    new gauge needs a field here of the snapshot's name and a column of the same name."""

    timestamp: float
    elapsed_s: float
    worker: str
    client: str
    concurrent: int = 0
    max_concurrent: int = 0
    launched_total: int = 0
    launched_per_s: float | None = None
    completed_total: int = 0
    wire_total: int = 0
    wire_failures_total: int = 0
    shed_total: int = 0
    shed_per_s: float | None = None
    shed_by_cause: dict[str, int] = field(default_factory=dict)
    breaker_state: str | None = None
    breaker_transitions_total: int | None = None
    limit: int | None = None
    throttle_in_flight: int | None = None
    queue_depth: int | None = None
    pool_in_use: int | None = None
    pool_waiting: int | None = None
    timeouts_total: int = 0
    failures_by_kind: dict[str, int] = field(default_factory=dict)
    recent_transitions: tuple[tuple[float, str, str], ...] = ()
    skipped: int = 0
    ok_total: int = 0
    server_errors_total: int = 0
    unfinished_total: int = 0
    pending: int = 0
    slo_ms: float | None = None
    slo_ok_total: int = 0
    latency_hdr: str = ""
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    deferred_total: int | None = None
    replayed_total: int | None = None
    expired_total: int | None = None
    defer_queue_depth: int | None = None
    replay_hdr: str | None = None
    defer_in_doubt_total: int | None = None
    defer_bad_rows_total: int | None = None
    kept_total: int | None = None
    hedged: int | None = None
    hedge_won: int | None = None
    criticality: dict[str, dict[str, Any]] | None = None  # `client_stats.criticality_parts`
    slo_ok_per_s: float | None = None  # for the tab's trends (`limit_series`), not a CSV column
    lost_with_worker: int = 0  # a lost worker's calls in flight or pending at its last report
    worker_lost_at_s: float | None = None  # when the master marked the worker lost (its elapsed_s)

    @property
    def server_error_kinds(self) -> str:
        return join_counts(self.errors_by_kind)

    @property
    def skipped_total(self) -> int:
        return self.skipped

    @cached_property
    def latency(self) -> LatencySummary:
        return LatencySummary.of(merge_encoded([self.latency_hdr]))

    @cached_property
    def _replay(self) -> LatencySummary:
        """The replay delays, decoded once per row. `Defer` records milliseconds, where the ledger
        records microseconds, so `_replay_ms` scales LatencySummary's fields back."""
        return LatencySummary.of(merge_encoded([self.replay_hdr or ""]))

    @cached_property
    def by_criticality(self) -> dict[str, tuple[dict[str, Any], LatencySummary]]:
        """Each criticality's counts and latency (decoded once per row); empty without a mix."""
        return {
            name: (part, LatencySummary.of(merge_encoded([part.get("latency_hdr", "")])))
            for name, part in (self.criticality or {}).items()
        }

    def _replay_ms(self, name: str) -> int | None:
        value = getattr(self._replay, name)
        return None if value is None else round(value * 1000)

    @property
    def replay_p50_ms(self) -> int | None:
        return self._replay_ms("p50_ms")

    @property
    def replay_p95_ms(self) -> int | None:
        return self._replay_ms("p95_ms")

    @property
    def replay_p99_ms(self) -> int | None:
        return self._replay_ms("p99_ms")

    @property
    def replay_max_ms(self) -> int | None:
        return self._replay_ms("max_ms")

    @classmethod
    def of(
        cls, timestamp: float, elapsed_s: float, worker: str, snap: ClientSnapshot, rates: Rates
    ) -> MitigationRow:
        """A snapshot under the CSV's names: a field the snapshot has by the same name is copied, the
        older counters by their short names (`_SNAPSHOT_NAMES`)."""
        values: dict[str, Any] = {}
        for name in _ROW_FIELDS:
            source = _SNAPSHOT_NAMES.get(name, name)
            if hasattr(snap, source):
                value = getattr(snap, source)
                values[name] = dict(value) if isinstance(value, dict) else value
        values.update(timestamp=timestamp, elapsed_s=elapsed_s, worker=worker)
        return cls(
            **values,
            launched_per_s=rates.launched_per_s,
            shed_per_s=rates.shed_per_s,
            slo_ok_per_s=rates.slo_ok_per_s,
        )

    def lost_at(self, elapsed_s: float) -> MitigationRow:
        """This worker's row once the master has lost it (docs/distributed.md): its counts stay as last
        reported; what it had in flight or pending then moves to `lost_with_worker`, since no outcome of
        those calls will ever reach the master; its gauges and rates are unknown from now on. Each
        criticality's part moves its own calls in flight or pending the same way."""
        return replace(
            self,
            concurrent=0,
            pending=0,
            lost_with_worker=self.lost_with_worker + self.concurrent + self.pending,
            criticality=_lost_parts(self.criticality),
            worker_lost_at_s=round(elapsed_s, 3),
            launched_per_s=None,
            shed_per_s=None,
            **dict.fromkeys(_GAUGES),
        )

    def csv_row(self) -> dict[str, str]:
        return {name: _CELLS.get(name, _cell)(self, name) for name in MITIGATION_COLUMNS}


def _lost_parts(parts: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]] | None:
    """A lost worker's per-criticality parts: what each had in flight or pending (launched less what
    ended) moves to its `lost_with_worker`, as the totals' does."""
    if not parts:
        return parts
    ended = ("ok", "server_errors", "shed", "unfinished")
    return {
        name: {
            **part,
            "pending": 0,
            "lost_with_worker": part.get("launched", 0) - sum(part.get(e, 0) for e in ended),
        }
        for name, part in parts.items()
    }


_SNAPSHOT_NAMES = {
    "launched_total": "launched",
    "completed_total": "completed",
    "wire_total": "wire",
    "wire_failures_total": "wire_failures",
    "shed_total": "shed",
    "breaker_transitions_total": "breaker_transitions",
    "timeouts_total": "timeouts",
    "ok_total": "ok",
    "server_errors_total": "server_errors",
    "unfinished_total": "unfinished",
    "slo_ok_total": "slo_ok",
    "deferred_total": "deferred",
    "replayed_total": "replayed",
    "expired_total": "expired",
    "defer_in_doubt_total": "in_doubt",
    "defer_bad_rows_total": "bad_rows",
    "kept_total": "kept",
}
_RATES = ("launched_per_s", "shed_per_s", "slo_ok_per_s")
_ROW_FIELDS = tuple(f.name for f in fields(MitigationRow) if f.name not in _RATES)
# What a lost worker's row no longer knows: the state of its policies right now.
_GAUGES = ("limit", "throttle_in_flight", "queue_depth", "pool_in_use", "pool_waiting", "defer_queue_depth")


def _cell(row: MitigationRow, name: str) -> str:
    value = getattr(row, name)
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def _criticality_cell(row: MitigationRow, name: str) -> str:
    """`critical_ok_total` -> the `ok` count of the critical part; `..._p99_ms` from its histogram."""
    label, _, stat = name.partition("_")
    found = row.by_criticality.get(label)
    if found is None:
        return ""
    part, latency = found
    if stat == "p99_ms":
        return "" if latency.p99_ms is None else f"{latency.p99_ms:.3f}"
    return str(part.get(stat.removesuffix("_total"), 0))


def _ms(row: MitigationRow, name: str) -> str:
    """A latency to the microsecond the histogram keeps (3 significant digits), never rounded further."""
    value = getattr(row.latency, name)
    return "" if value is None else f"{value:.3f}"


_CELLS: dict[str, Callable[[MitigationRow, str], str]] = {
    "timestamp": lambda row, _: f"{row.timestamp:.3f}",
    "elapsed_s": lambda row, _: f"{row.elapsed_s:.3f}",
    "shed_by_cause": lambda row, _: join_counts(row.shed_by_cause),
    **dict.fromkeys(LATENCY_COLUMNS, _ms),
    **dict.fromkeys(CRITICALITY_COLUMNS, _criticality_cell),
}


def _sum_optional(values: Iterable[Any]) -> Any:
    present = [value for value in values if value is not None]
    return sum(present) if present else None


def breaker_summary(states: Iterable[str | None]) -> str | None:
    """One state when every worker agrees, else the count of each: `closed=1;open=1`."""
    counts: dict[str, int] = {}
    for state in states:
        if state is not None:
            counts[state] = counts.get(state, 0) + 1
    if not counts:
        return None
    return next(iter(counts)) if len(counts) == 1 else join_counts(counts)


def _added_counts(dicts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for counts in dicts:
        for key, value in counts.items():
            total[key] = total.get(key, 0) + value
    return total


Transitions = tuple[tuple[float, str, str], ...]


def _latest_transitions(lists: Iterable[Transitions]) -> Transitions:
    merged = sorted((t for transitions in lists for t in transitions), key=lambda t: t[0])
    return tuple(merged[-RECENT_TRANSITIONS:])


def _merged_hdr(encoded: Iterable[str | None]) -> str:
    present = [text for text in encoded if text]
    if len(present) <= 1:
        return present[0] if present else ""
    return encode_histogram(merge_encoded(present))


def _summed_parts(values: list[dict[str, dict[str, Any]] | None]) -> dict[str, dict[str, Any]] | None:
    """The workers' per-criticality parts: counts added, histograms merged."""
    present = [value for value in values if value]
    if not present:
        return None
    total: dict[str, dict[str, Any]] = {}
    for name in sorted({name for parts in present for name in parts}):
        parts = [parts[name] for parts in present if name in parts]
        summed = _added_counts({k: v for k, v in p.items() if k != "latency_hdr"} for p in parts)
        total[name] = {**summed, "latency_hdr": _merged_hdr(p.get("latency_hdr") for p in parts)}
    return total


# How the workers' values of a field make the `all` row's; every other field is summed (None where no
# worker has it: a gauge of a policy the class does not have stays an empty cell).
_SUMS: dict[str, Callable[[list[Any]], Any]] = {
    "shed_by_cause": _added_counts,
    "failures_by_kind": _added_counts,
    "errors_by_kind": _added_counts,
    "breaker_state": breaker_summary,
    "recent_transitions": _latest_transitions,
    "slo_ms": lambda values: next((v for v in values if v is not None), None),
    "latency_hdr": _merged_hdr,
    "replay_hdr": lambda values: _merged_hdr(values) or None,
    "criticality": _summed_parts,
    "worker_lost_at_s": lambda values: None,  # a worker's own: the `all` row names no worker
}


def sum_rows(rows: list[MitigationRow], timestamp: float, elapsed_s: float) -> MitigationRow:
    """The `all` row of one client: the sum of its per-worker rows."""
    fixed = {"timestamp": timestamp, "elapsed_s": elapsed_s, "worker": ALL_WORKERS, "client": rows[0].client}
    values = {
        f.name: _SUMS.get(f.name, _sum_optional)([getattr(row, f.name) for row in rows])
        for f in fields(MitigationRow)
        if f.name not in fixed
    }
    return MitigationRow(**fixed, **values)
