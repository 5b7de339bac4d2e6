"""One sample of the target's status: the gauges as they were, and rates over the interval since the
previous sample, worked out from the server's monotonically increasing totals (reset-aware).

`make_sample` turns one checked /stats body, or one record of the target's status series, into a
`ServerSample`; `ServerSample.csv_row` is its row of PREFIX_server.csv (columns in
`mitigations.csv_schema.SERVER_COLUMNS`). Pure: the sampler (`server_sampler`) does the asking.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from locust_plugin.values import parse_whole
from mitigations.criticality import CRITICALITIES
from mitigations.csv_schema import SERVER_COLUMNS, SERVER_CRITICALITY_ENDS

RATED_TOTALS = ("completed_total", "rejected_total", "errors_total")
REQUIRED_KEYS = ("time", "lag_ms", "in_flight", "concurrent", "sockets", "requests_total", *RATED_TOTALS)
CRITICALITY_PREFIXES = tuple(f"{label}_" for label in CRITICALITIES)
SAMPLER_OWN_SOCKETS = 1  # the server counts the connection that asks for /stats


class NotATarget(ValueError):
    """The host answered, but not with a Hammerlab target's /stats."""


@dataclass(frozen=True)
class SampleInterval:
    """A sampling period in milliseconds: 100 to 10,000, or 0 for no sampling at all."""

    ms: int = 250

    def __post_init__(self) -> None:
        if (
            isinstance(self.ms, bool)
            or not isinstance(self.ms, int)
            or not (self.ms == 0 or 100 <= self.ms <= 10_000)
        ):
            raise ValueError(
                "--server-sample-ms must be 0 (off) or a whole number of milliseconds from 100 to 10000, "
                f"got {self.ms!r}"
            )

    @property
    def off(self) -> bool:
        return self.ms == 0

    @property
    def seconds(self) -> float:
        return self.ms / 1000.0

    @classmethod
    def parse(cls, text: object) -> SampleInterval:
        try:
            value = parse_whole(text)  # plain ASCII digits: no 3_000, no full-width digits
        except ValueError:
            raise ValueError(
                f"--server-sample-ms must be a whole number of milliseconds in plain digits, got {text!r}"
            ) from None
        return cls(value)


@dataclass(frozen=True)
class ServerSample:
    """One answer from /stats, with rates over the interval since the previous one. A sample from a
    Prometheus endpoint has None wherever nothing was mapped."""

    timestamp: float
    elapsed_s: float
    server_time: float
    since_reset_s: float
    reset_count: int
    lag_ms: float | None
    in_flight: int | None
    concurrent: int | None
    sockets: int | None
    requests_total: int | None
    completed_total: int | None
    rejected_total: int | None
    errors_total: int | None
    completed_per_s: float | None
    rejected_per_s: float | None
    errors_per_s: float | None
    faults: tuple[str, ...]
    fault_details: tuple[str, ...]
    peak_lag_ms: float | None = None
    peak_in_flight: int | None = None
    peak_sockets: int | None = None
    server_seq: int | None = None
    expired_total: int | None = None
    work_cpu_ms_total: float | None = None
    wasted_cpu_ms_total: float | None = None
    wasted_work_ratio: float | None = None
    by_criticality: Mapping[str, int] = field(default_factory=dict)  # `critical_rejected_total`: count

    def csv_row(self) -> dict[str, str]:
        return {
            name: _plain(self.by_criticality.get(name))
            if name.startswith(CRITICALITY_PREFIXES)
            else _CELLS.get(name, _plain)(getattr(self, name))
            for name in SERVER_COLUMNS
        }


def criticality_totals(stats: Mapping[str, Any]) -> dict[str, int]:
    """`/stats`' `by_criticality_total` as the server CSV's columns; {} for a target without it."""
    split = stats.get("by_criticality_total")
    if not isinstance(split, Mapping):
        return {}
    return {
        f"{label}_{ended}_total": int(count)
        for label, counts in split.items()
        if isinstance(label, str) and label in CRITICALITIES and isinstance(counts, Mapping)
        for ended in SERVER_CRITICALITY_ENDS
        if isinstance(count := counts.get(ended), int) and not isinstance(count, bool)
    }


def _plain(value: int | None) -> str:
    return "" if value is None else str(value)


def _fixed(decimals: int) -> Callable[[float | None], str]:
    return lambda value: "" if value is None else f"{value:.{decimals}f}"


_CELLS: dict[str, Callable[[Any], str]] = {
    **dict.fromkeys(("timestamp", "elapsed_s", "server_time", "wasted_work_ratio"), _fixed(3)),
    **dict.fromkeys(("lag_ms", "peak_lag_ms", "work_cpu_ms_total", "wasted_cpu_ms_total"), _fixed(1)),
    **dict.fromkeys(("completed_per_s", "rejected_per_s", "errors_per_s"), _fixed(2)),
    "faults": ";".join,
}


def _peak(stats: Mapping[str, Any], name: str) -> float | None:
    value = stats.get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def check_stats(body: Any) -> Mapping[str, Any]:
    """The /stats body if it is a Hammerlab target's, else `NotATarget`."""
    if not isinstance(body, Mapping):
        raise NotATarget("the answer is not a JSON object")
    missing = [key for key in REQUIRED_KEYS if not isinstance(body.get(key), int | float)]
    if missing:
        raise NotATarget(f"the answer has no {', '.join(missing)}")
    return body


def was_reset(previous: ServerSample, stats: Mapping[str, Any]) -> bool:
    """True when the server's counters restarted between two samples (an /admin/reset or a restart)."""
    window = float(stats["time"]) - previous.server_time
    return (
        int(stats.get("reset_count", 0)) != previous.reset_count
        or float(stats.get("since_reset_s", window)) < window
        or any(int(stats[name]) < getattr(previous, name) for name in RATED_TOTALS)
    )


def interval_rate(
    before: int, after: int, window_s: float, reset: bool, since_reset_s: float
) -> float | None:
    """Events per second between two readings of a counter. After a reset the counter restarted from 0,
    `since_reset_s` ago, so the whole reading counts, over the part of the window since the reset."""
    if reset:
        before = 0
        window_s = min(window_s, since_reset_s) if since_reset_s > 0 else window_s
    if window_s <= 0:
        return None
    return max(0, after - before) / window_s


def make_sample(
    stats: Mapping[str, Any],
    previous: ServerSample | None,
    *,
    received_at: float,
    started_at: float,
    own_sockets: int = SAMPLER_OWN_SOCKETS,
) -> ServerSample:
    """A sample from one checked /stats body or series record. Rates need a previous sample of the same
    test. `own_sockets`: connections of the sampler's that the server counted (none on the status port)."""
    server_time = float(stats["time"])
    since_reset = float(stats.get("since_reset_s", 0.0))
    rates: dict[str, float | None] = dict.fromkeys(RATED_TOTALS)
    if previous is not None:
        reset = was_reset(previous, stats)
        window = server_time - previous.server_time
        for name in RATED_TOTALS:
            rates[name] = interval_rate(getattr(previous, name), int(stats[name]), window, reset, since_reset)
        wasted_ratio = interval_share(previous, stats, reset)
    else:
        wasted_ratio = None
    active = [fault for fault in stats.get("faults") or () if isinstance(fault, Mapping)]
    peak_in_flight = _peak(stats, "peak_in_flight")
    peak_sockets = _peak(stats, "peak_sockets")
    return ServerSample(
        timestamp=round(received_at, 3),
        elapsed_s=round(max(0.0, received_at - started_at), 3),
        server_time=server_time,
        since_reset_s=since_reset,
        reset_count=int(stats.get("reset_count", 0)),
        lag_ms=float(stats["lag_ms"]),
        in_flight=int(stats["in_flight"]),
        concurrent=int(stats["concurrent"]),
        sockets=max(0, int(stats["sockets"]) - own_sockets),
        requests_total=int(stats["requests_total"]),
        completed_total=int(stats["completed_total"]),
        rejected_total=int(stats["rejected_total"]),
        errors_total=int(stats["errors_total"]),
        completed_per_s=rates["completed_total"],
        rejected_per_s=rates["rejected_total"],
        errors_per_s=rates["errors_total"],
        faults=tuple(sorted({str(fault.get("kind")) for fault in active})),
        fault_details=tuple(describe_fault(fault) for fault in active),
        peak_lag_ms=_peak(stats, "peak_lag_ms"),
        peak_in_flight=None if peak_in_flight is None else int(peak_in_flight),
        peak_sockets=None if peak_sockets is None else max(0, int(peak_sockets) - own_sockets),
        server_seq=stats["seq"] if isinstance(stats.get("seq"), int) else None,
        expired_total=None if (expired := _peak(stats, "expired_total")) is None else int(expired),
        work_cpu_ms_total=_peak(stats, "work_cpu_ms_total"),
        wasted_cpu_ms_total=_peak(stats, "wasted_cpu_ms_total"),
        wasted_work_ratio=wasted_ratio,
        by_criticality=criticality_totals(stats),
    )


def interval_share(previous: ServerSample, stats: Mapping[str, Any], reset: bool) -> float | None:
    """Wasted CPU / work CPU between the previous sample and `stats` (from 0 after a reset). None when
    the target does not report them or did no CPU-bound work in the interval."""
    work, wasted = _peak(stats, "work_cpu_ms_total"), _peak(stats, "wasted_cpu_ms_total")
    if work is None or wasted is None:
        return None
    work_before = 0.0 if reset else previous.work_cpu_ms_total or 0.0
    wasted_before = 0.0 if reset else previous.wasted_cpu_ms_total or 0.0
    spent = work - work_before
    if spent <= 0:
        return None
    return min(1.0, max(0.0, (wasted - wasted_before) / spent))


def describe_fault(fault: Mapping[str, Any]) -> str:
    """`outage 7.5 s left`, `error 50% 12.0 s left`, `hang 20% until cleared`."""
    parts = [str(fault.get("kind"))]
    rate = fault.get("rate")
    if isinstance(rate, int | float) and rate < 1:
        parts.append(f"{rate * 100:.0f}%")
    remaining = fault.get("remaining_s")
    parts.append("until cleared" if remaining is None else f"{float(remaining):.1f} s left")
    return " ".join(parts)
