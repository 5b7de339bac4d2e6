"""What the Target server and Mitigations tabs show: their columns, and their rows built from the
sampler's history and the mitigations board. Pure functions of the numbers (the tests call them
directly); the routes that serve them are in `web_ui`."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence

from locust_plugin.ledger import LatencySummary
from locust_plugin.mitigation_rows import MitigationRow, join_counts
from locust_plugin.server_sample import ServerSample
from mitigations.csv_schema import ALL_WORKERS, skip_share, too_many_skipped

SERVER_TAB = "target-server"
MITIGATIONS_TAB = "mitigations"
TREND_S = 30.0
SPARK_POINTS = 30
SPARK = "▁▂▃▄▅▆▇█"

TABS = [{"title": "Target server", "key": SERVER_TAB}, {"title": "Mitigations", "key": MITIGATIONS_TAB}]
SERVER_TABLE = [
    {"key": "metric", "title": "Server"},
    {"key": "now", "title": "Now"},
    {"key": "low", "title": f"Low (last {TREND_S:.0f} s)"},
    {"key": "high", "title": f"High (last {TREND_S:.0f} s)"},
    {"key": "trend", "title": f"Last {TREND_S:.0f} s"},
]
MITIGATIONS_TABLE = [
    {"key": "client", "title": "Client"},
    {"key": "worker", "title": "Worker"},
    {"key": "concurrent", "title": "Concurrent (max)"},
    {"key": "launched", "title": "Launched/s"},
    {"key": "shed", "title": "Shed/s"},
    {"key": "causes", "title": "Shed by cause (total)"},
    {"key": "breaker", "title": "Breaker"},
    {"key": "transitions", "title": "Last transitions"},
    {"key": "limiter", "title": "Throttle in flight / queued / limit"},
    {"key": "pool", "title": "Pool in use / waiting"},
    {"key": "timeouts", "title": "Timeouts"},
    {"key": "failures", "title": "Wire failures by kind"},
    {"key": "calls", "title": "Calls: ok / failed / shed / unfinished / pending (launched)"},
    {"key": "slo", "title": "In SLO"},
    {"key": "latency", "title": "p50 / p99 / max ms (from launch)"},
    {"key": "skipped", "title": "Skipped slots"},
    {"key": "deferred", "title": "Deferred: queued / kept / replayed / expired (replay p50, p99)"},
]
# (label, attribute, format)
SERVER_METRICS = (
    ("lag ms", "lag_ms", "{:.0f}"),
    ("in flight", "in_flight", "{:d}"),
    ("concurrent (tasks waiting)", "concurrent", "{:d}"),
    ("sockets", "sockets", "{:d}"),
    ("completed/s", "completed_per_s", "{:.1f}"),
    ("rejected/s (503 too busy)", "rejected_per_s", "{:.1f}"),
    ("errors/s (injected faults)", "errors_per_s", "{:.1f}"),
    ("wasted work (CPU for clients that gave up)", "wasted_work_ratio", "{:.0%}"),
)


# -- table rows (pure: the tests call these directly) --------------------------------------------------------


def sparkline(values: Sequence[float], points: int = SPARK_POINTS) -> str:
    """Unicode bars, one per bucket (the bucket's highest value, so a spike is never averaged away)."""
    if not values:
        return ""
    size = max(1, -(-len(values) // points))
    buckets = [max(values[i : i + size]) for i in range(0, len(values), size)]
    low, high = min(buckets), max(buckets)
    if high == low:
        return SPARK[0] * len(buckets)
    return "".join(SPARK[round((v - low) / (high - low) * (len(SPARK) - 1))] for v in buckets)


def recent(history: Iterable[ServerSample], seconds: float = TREND_S) -> list[ServerSample]:
    samples = list(history)
    if not samples:
        return []
    since = samples[-1].timestamp - seconds
    return [s for s in samples if s.timestamp >= since]


def server_rows(
    history: Iterable[ServerSample],
    status: str,
    is_target: bool = True,
    mapped: Mapping[str, str] | None = None,
) -> list[dict[str, str]]:
    """The Target server table: live value, low, high and a sparkline of the last 30 s per metric.
    A host that is not a Hammerlab target has no such numbers: one line says so, and why. With
    `--server-metrics`, `mapped` (column -> series) says which rows there are and where each comes from."""
    if not is_target:
        return [{"metric": "not a Hammerlab target", "now": status, "low": "", "high": "", "trend": ""}]
    window = recent(history)
    latest = window[-1] if window else None
    rows = []
    for label, attribute, fmt in SERVER_METRICS:
        if mapped is not None:
            series = mapped.get(attribute) or mapped.get(attribute.replace("_per_s", "_total"))
            if series is None:
                continue
            label = f"{label.split(' (')[0]} = {series}"
        values = [v for v in (getattr(s, attribute) for s in window) if v is not None]
        now = getattr(latest, attribute, None) if latest else None
        rows.append(
            {
                "metric": label,
                "now": "-" if now is None else fmt.format(now),
                "low": fmt.format(min(values)) if values else "",
                "high": fmt.format(max(values)) if values else "",
                "trend": sparkline(values),
            }
        )
    if mapped is None:
        faults = "; ".join(latest.fault_details) if latest and latest.fault_details else "none"
        rows.append({"metric": "active faults", "now": faults, "low": "", "high": "", "trend": ""})
    age = f"last {time.time() - latest.timestamp:.1f} s ago" if latest else "no sample yet"
    rows.append({"metric": "sampler", "now": status, "low": "", "high": "", "trend": age})
    return rows


def _num(value: float | int | None, fmt: str = "{}") -> str:
    return "-" if value is None else fmt.format(value)


def describe_transitions(transitions: Iterable[tuple[float, str, str]], now: float) -> str:
    return ", ".join(
        f"{old}→{new} {max(0.0, now - at):.1f} s ago" for at, old, new in reversed(list(transitions))
    )


def describe_deferred(row: MitigationRow) -> str:
    """`12 / 340 / 320 / 8 (4.1 s, 9.8 s)`, or `-` without a defer layer."""
    if row.deferred_total is None:
        return "-"
    counts = (
        f"{_num(row.defer_queue_depth)} / {row.deferred_total} / {_num(row.replayed_total)} / "
        f"{_num(row.expired_total)}"
    )
    set_aside = ", ".join(
        f"{count} {what}"
        for count, what in ((row.defer_in_doubt_total, "in doubt"), (row.defer_bad_rows_total, "bad rows"))
        if count
    )
    if set_aside:
        counts = f"{counts}; set aside, never sent: {set_aside}"
    p50, p99 = row.replay_p50_ms, row.replay_p99_ms
    if p50 is None or p99 is None:
        return counts
    return f"{counts} ({p50 / 1000:.1f} s, {p99 / 1000:.1f} s)"


def mitigation_rows(rows: Sequence[MitigationRow], now: float | None = None) -> list[dict[str, str]]:
    """The Mitigations table: per worker and client, and the `all` sums when there are several workers."""
    now = time.time() if now is None else now
    workers = {row.worker for row in rows if row.worker != ALL_WORKERS}
    shown = [row for row in rows if row.worker != ALL_WORKERS or len(workers) > 1]
    shown.sort(key=lambda row: (row.client, row.worker == ALL_WORKERS, row.worker))
    table = []
    for row in shown:
        limiter = "-"
        if row.throttle_in_flight is not None or row.limit is not None:
            limiter = f"{_num(row.throttle_in_flight)} / {_num(row.queue_depth)} / {_num(row.limit)}"
        pool = "-" if row.pool_in_use is None else f"{row.pool_in_use} / {_num(row.pool_waiting)}"
        table.append(
            {
                "client": row.client,
                "worker": row.worker,
                "concurrent": f"{row.concurrent} ({row.max_concurrent})",
                "launched": _num(row.launched_per_s, "{:.0f}"),
                "shed": _num(row.shed_per_s, "{:.0f}"),
                "causes": join_counts(row.shed_by_cause).replace(";", ", ") or "0",
                "breaker": row.breaker_state or "-",
                "transitions": describe_transitions(row.recent_transitions, now) or "-",
                "limiter": limiter,
                "pool": pool,
                "timeouts": str(row.timeouts_total),
                "failures": join_counts(row.failures_by_kind).replace(";", ", ") or "0",
                "calls": f"{row.ok_total} / {row.server_errors_total} / {row.shed_total} / "
                f"{row.unfinished_total} / {row.pending} ({row.launched_total})",
                "slo": _slo(row),
                "latency": _latency(row),
                "skipped": _skipped(row),
                "deferred": describe_deferred(row),
            }
        )
        table.extend(criticality_rows(row))
    return table


def criticality_rows(row: MitigationRow) -> list[dict[str, str]]:
    """With `--criticality-mix`, one row per criticality under its class's row: its calls, share in
    the SLO and latency (docs/criticality.md); the other cells are the class's, left empty."""
    rows = []
    for label, (part, latency) in sorted(row.by_criticality.items()):
        launched = part.get("launched", 0)
        cells = dict.fromkeys((column["key"] for column in MITIGATIONS_TABLE), "")
        cells.update(
            client=f"{row.client} · {label}",
            worker=row.worker,
            calls=f"{part.get('ok', 0)} / {part.get('server_errors', 0)} / {part.get('shed', 0)} / "
            f"{part.get('unfinished', 0)} / {part.get('pending', 0)} ({launched})",
            slo=_in_slo(part.get("slo_ok", 0), launched, row.slo_ms),
            latency=_latency_text(latency),
        )
        rows.append(cells)
    return rows


def _slo(row: MitigationRow) -> str:
    return _in_slo(row.slo_ok_total, row.launched_total, row.slo_ms)


def _in_slo(slo_ok: int, launched: int, slo_ms: float | None) -> str:
    if not launched or slo_ms is None:
        return "-"
    return f"{slo_ok / launched:.1%} within {slo_ms:g} ms"


def _latency(row: MitigationRow) -> str:
    return _latency_text(row.latency)


def _latency_text(latency: LatencySummary) -> str:
    if not latency.count:
        return "-"
    return f"{latency.p50_ms:.1f} / {latency.p99_ms:.1f} / {latency.max_ms:.1f}"


def _skipped(row: MitigationRow) -> str:
    if not row.skipped:
        return "0"
    share = skip_share(row.launched_total, row.skipped)
    behind = too_many_skipped(row.launched_total, row.skipped)
    return f"{row.skipped} ({share:.1%})" + (" (generator behind: latency understated)" if behind else "")


# -- Flask wiring ------------------------------------------------------------------------------------
