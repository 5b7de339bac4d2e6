"""Rates from a client's consecutive snapshots: launched, shed and SLO goodput per second, over ~1 s.

A worker's snapshots arrive every 3 s (with Locust's stats reports), a single process samples every
`--server-sample-ms`; either way a rate spans the newest earlier snapshot at least `RATE_WINDOW_S` old.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from locust_plugin.client_stats import ClientSnapshot

RATE_WINDOW_S = 1.0


def per_second(before: float, after: float, seconds: float) -> float | None:
    """A counter's rate; None when there is no interval, or the counter went backwards (a new run)."""
    if seconds <= 0 or after < before:
        return None
    return (after - before) / seconds


@dataclass(frozen=True)
class Rates:
    launched_per_s: float | None = None
    shed_per_s: float | None = None
    slo_ok_per_s: float | None = None  # SLO goodput: 2xx answers within the SLO, per second


def rates_between(previous: ClientSnapshot | None, current: ClientSnapshot) -> Rates:
    """Rates since the previous snapshot of the same run; for the first, since the run started (every
    counter was 0 then: the runtimes are rebuilt at test start)."""
    if previous is None or previous.started_at != current.started_at:
        seconds = current.at - current.started_at
        return Rates(
            per_second(0, current.launched, seconds),
            per_second(0, current.shed, seconds),
            per_second(0, current.slo_ok, seconds),
        )
    seconds = current.at - previous.at
    return Rates(
        per_second(previous.launched, current.launched, seconds),
        per_second(previous.shed, current.shed, seconds),
        per_second(previous.slo_ok, current.slo_ok, seconds),
    )


def rate_baseline(trail: Iterable[ClientSnapshot], at: float) -> ClientSnapshot | None:
    """The newest earlier snapshot at least `RATE_WINDOW_S` old, else the oldest one there is: rates
    then span about a second even when samples come every 250 ms (or an extra one right after the
    last), and span the gap between reports when a worker reports every 3 s."""
    candidates = list(trail)
    old_enough = [snap for snap in candidates if snap.at <= at - RATE_WINDOW_S]
    if old_enough:
        return old_enough[-1]
    return candidates[0] if candidates else None
