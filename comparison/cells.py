"""How a summary value is written: each column's decimals, and the `key=count;...` cells largest first.

One place, so summary.csv, summary.md and the report round a number the same way.
"""

from __future__ import annotations

from mitigations.criticality import CRITICALITIES

_DECIMALS = {
    "jain_index": 3,
    "capacity_rps": 1,
    "offered_rps": 1,
    "slo_goodput_rps": 1,
    "slo_attainment": 3,
    "goodput_rps": 1,
    "server_max_lag_ms": 1,
    "server_p95_lag_ms": 1,
    "recovery_s": 2,
    "amplification": 2,
    "outage_amplification": 2,
    "reduced_capacity_rps": 1,
    "goodput_reduced_rps": 1,
    "goodput_restored_rps": 1,
    "wasted_work_ratio": 3,
    "pre_trigger_slo_goodput_rps": 1,
    "post_trigger_slo_goodput_rps": 1,
    "peak_share": 2,
}


# A scenario's own columns (not in _DECIMALS) are rounded by what their names end with.
_SUFFIX_DECIMALS = (("_rps", 1), ("_attainment", 3), ("_share", 2), ("_ratio", 3), ("_s", 2), ("_x", 2))
_LATENCY_COLUMNS = frozenset(
    {"p50_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms", *(f"{label}_p99_ms" for label in CRITICALITIES)}
)


def three_digits(ms: float) -> str:
    """A latency with the three significant digits its histogram keeps: 0.412, 41.2, 412, 4120."""
    if ms >= 100:
        return f"{ms:.0f}"
    return f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}" if ms >= 1 else f"{ms:.3f}"


def cell(name: str, value: object) -> str:
    """`value` as summary.csv writes column `name`: latencies to three digits, rates and shares to theirs."""
    if value is None:
        return ""
    if name in _LATENCY_COLUMNS and isinstance(value, float):
        return three_digits(value)
    if name == "slo_ms" and isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, float):
        decimals = _DECIMALS.get(name, next((d for end, d in _SUFFIX_DECIMALS if name.endswith(end)), 0))
        return f"{value:.{decimals}f}"
    return str(value)


def join_by_count(counts: dict[str, int]) -> str:
    """`connect-timeout=12;503=3`, largest first: the same `key=count;...` form as the sampler's."""
    return ";".join(f"{key}={value}" for key, value in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def sort_counts(joined: str) -> str:
    """`a=1;b=3` (the sampler's sorted-by-name form) -> `b=3;a=1`, largest first."""
    counts: dict[str, int] = {}
    for part in filter(None, joined.split(";")):
        key, _, value = part.rpartition("=")
        counts[key] = counts.get(key, 0) + int(value)
    return join_by_count(counts)
