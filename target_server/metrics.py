"""/metrics: the /stats snapshot in Prometheus text format, plus a request-duration histogram.

A custom collector reads `TargetState.snapshot()` at scrape time, so Prometheus and /stats can never
disagree and the request path does no extra bookkeeping. Each app gets its own registry (no global state).

Names follow Prometheus conventions (checked by `promtool check metrics` in the tests): base units
(`target_event_loop_lag_seconds`, not milliseconds), `_total` on counters, and one histogram,
`target_request_duration_seconds{outcome=...}`, of how long each /doWork request took inside the server,
by how it ended. The histogram is kept per process (`RequestDurations`) and summed over the gunicorn
workers like the other counters; /admin/reset zeroes it with them.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from target_server.deadline import EXPIRED_HEADER

if TYPE_CHECKING:
    from flask import Response

    from target_server.cluster import Cluster


class TargetState(Protocol):
    """What the collector reads of `target_server.state.TargetState`. A protocol, so this module needs
    nothing from `state`, which keeps a `RequestDurations` from here."""

    durations: RequestDurations
    cluster: Cluster | None
    control: Any

    def snapshot(self) -> dict[str, Any]: ...

    def local_snapshot(self) -> dict[str, Any]: ...

    def wall(self) -> float: ...


CONTENT_TYPE = CONTENT_TYPE_LATEST

# (stats key, metric name, help, scale): /stats keeps milliseconds; Prometheus wants base units
GAUGES = (
    ("lag_ms", "target_event_loop_lag_seconds", "Smoothed event-loop lag (toobusy), max over workers", 1e-3),
    ("peak_lag_ms", "target_event_loop_lag_peak_seconds", "Highest smoothed lag since start or reset", 1e-3),
    ("in_flight", "target_in_flight", "/doWork requests being handled", 1),
    ("concurrent", "target_concurrent_tasks", "Tasks in their non-blocking wait", 1),
    ("sockets", "target_sockets", "Open client connections", 1),
    ("shed_probability", "target_shed_probability", "Chance that a /doWork request is shed now", 1),
    (
        "sheddable_shed_probability",
        "target_sheddable_shed_probability",
        "Chance that a sheddable /doWork request is shed now under --priority-shedding",
        1,
    ),
    (
        "sheddable_lag_ms",
        "target_sheddable_max_event_loop_lag_seconds",
        "Lag above which sheddable requests may be shed under --priority-shedding",
        1e-3,
    ),
    ("uptime_s", "target_uptime_seconds", "Seconds since start", 1),
    (
        "wasted_work_ratio",
        "target_wasted_work_ratio",
        "Share of /doWork CPU time spent for clients that had already given up, since start or reset",
        1,
    ),
)
COUNTERS = (
    ("requests_total", "target_requests", "/doWork requests received"),
    ("completed_total", "target_completed", "/doWork requests answered 200"),
    ("rejected_total", "target_rejected", "/doWork requests shed with 503 too busy"),
    ("errors_total", "target_errors", "/doWork requests failed by a fault"),
    ("bad_requests_total", "target_bad_requests", "/doWork requests refused with 400"),
    ("abandoned_total", "target_abandoned", "/doWork requests whose client hung up before the work"),
    ("tasks_completed_total", "target_tasks_completed", "Tasks that finished their wait"),
    ("sockets_accepted_total", "target_sockets_accepted", "Connections accepted"),
    ("sockets_closed_total", "target_sockets_closed", "Connections closed"),
    ("expired_total", "target_expired", "/doWork requests answered 504 because their deadline had passed"),
)

# by_criticality_total's counts: (key, metric name, help), each labelled criticality="critical|sheddable"
CRITICALITY_COUNTERS = (
    ("requests", "target_requests_by_criticality", "/doWork requests by their Hammerlab-Criticality"),
    ("completed", "target_completed_by_criticality", "/doWork requests answered 200, by criticality"),
    ("rejected", "target_rejected_by_criticality", "/doWork requests shed with 503 too busy, by criticality"),
)

CPU_COUNTERS = (  # /stats has milliseconds; Prometheus wants seconds
    ("work_cpu_ms_total", "target_work_cpu_seconds", "CPU time of /doWork's CPU-bound part"),
    (
        "wasted_cpu_ms_total",
        "target_wasted_cpu_seconds",
        "CPU time of /doWork's CPU-bound part spent for clients that had already given up",
    ),
)
# Upper bounds in seconds: the seed's healthy request takes ~30 ms, a melting server seconds.
BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
OUTCOMES = ("completed", "rejected", "error", "bad_request", "abandoned", "expired")
_BY_STATUS = {200: "completed", 400: "bad_request", 499: "abandoned"}
TOO_BUSY_BODY = b'{"error": "too busy!"}'


class RequestDurations:
    """Per-process histogram of /doWork durations by outcome: bucket counts (not cumulative) and sums."""

    def __init__(self, buckets: Sequence[float] = BUCKETS) -> None:
        self.buckets = tuple(buckets)
        self.counts: dict[str, list[int]] = {}
        self.sums: dict[str, float] = {}

    def observe(self, outcome: str, seconds: float) -> None:
        counts = self.counts.get(outcome)
        if counts is None:
            counts = self.counts[outcome] = [0] * (len(self.buckets) + 1)  # the last one is +Inf
        counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.sums[outcome] = self.sums.get(outcome, 0.0) + seconds

    def zero(self) -> None:
        self.counts.clear()
        self.sums.clear()

    def to_json(self) -> dict[str, Any]:
        """What a gunicorn worker publishes for the others to add up."""
        return {"counts": {k: list(v) for k, v in self.counts.items()}, "sums": dict(self.sums)}


def outcome_of(response: Response) -> str:
    """How a /doWork request ended, from its response: a streamed body is a reset or hang fault."""
    if response.is_streamed:
        return "error"
    if response.status_code == 503 and response.get_data() == TOO_BUSY_BODY:
        return "rejected"
    if response.headers.get(EXPIRED_HEADER):  # --drop-expired's fast 504, not a fault's
        return "expired"
    return _BY_STATUS.get(response.status_code, "error")


def timed(state: TargetState, handler: Callable[[], Response]) -> Response:
    """Run one /doWork handler and put its duration into the state's histogram."""
    started = time.perf_counter()
    outcome = "error"
    try:
        response = handler()
        outcome = outcome_of(response)
        return response
    finally:
        state.durations.observe(outcome, time.perf_counter() - started)


def merged_durations(workers: Sequence[Mapping[str, Any]], size: int) -> dict[str, tuple[list[int], float]]:
    """Every outcome's bucket counts and sum, over the workers' published histograms."""
    merged: dict[str, tuple[list[int], float]] = {}
    for worker in workers:
        data = worker.get("durations") or {}
        for outcome, counts in (data.get("counts") or {}).items():
            if len(counts) != size:
                continue  # a worker with other buckets (a mixed upgrade): leave it out rather than lie
            total, seconds = merged.get(outcome, ([0] * size, 0.0))
            merged[outcome] = (
                [a + b for a, b in zip(total, counts, strict=True)],
                seconds + float((data.get("sums") or {}).get(outcome, 0.0)),
            )
    return merged


class StatsCollector(Collector):
    def __init__(self, state: TargetState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        stats = self.state.snapshot()
        for key, name, text, scale in GAUGES:
            yield GaugeMetricFamily(name, text, value=stats[key] * scale)
        for key, name, text in COUNTERS:
            yield CounterMetricFamily(name, text, value=stats[key])
        faulted = CounterMetricFamily("target_faulted", "/doWork requests hit by a fault", labels=["kind"])
        for kind, count in stats["faulted_total"].items():
            faulted.add_metric([kind], count)
        yield faulted
        dropped = CounterMetricFamily(
            "target_dropped_connections", "Connections the server ended itself", labels=["reason"]
        )
        for reason, count in stats["dropped_total"].items():
            dropped.add_metric([reason], count)
        yield dropped
        active = GaugeMetricFamily("target_faults_active", "Active faults", labels=["kind"])
        for kind in stats["faulted_total"]:
            active.add_metric([kind], sum(1 for f in stats["faults"] if f["kind"] == kind))
        yield active
        for key, name, text in CRITICALITY_COUNTERS:
            family = CounterMetricFamily(name, text, labels=["criticality"])
            for level, counts in stats["by_criticality_total"].items():
                family.add_metric([level], counts[key])
            yield family
        for key, name, text in CPU_COUNTERS:
            yield CounterMetricFamily(name, text, value=stats[key] / 1000)
        yield GaugeMetricFamily("target_workers", "Worker processes summed", value=stats["workers"]["count"])
        config = stats["config"]
        yield GaugeMetricFamily(
            "target_sync_work_seconds",
            "Effective sync_work_ms, in seconds",
            value=config["sync_work_ms"] / 1000,
        )
        yield GaugeMetricFamily(
            "target_max_event_loop_lag_seconds",
            "Effective max_lag_ms (the shedding threshold), in seconds",
            value=config["max_lag_ms"] / 1000,
        )
        yield self._durations()

    def _durations(self) -> Metric:
        state = self.state
        buckets = state.durations.buckets
        workers = [state.local_snapshot()]
        if state.cluster is not None:
            workers += state.cluster.peers(state.wall())
        counted = [w for w in workers if w.get("epoch") == state.control.reset_epoch]
        merged = merged_durations(counted, len(buckets) + 1)
        family = HistogramMetricFamily(
            "target_request_duration_seconds",
            "Time a /doWork request spent in the server, by outcome",
            labels=["outcome"],
        )
        for outcome in OUTCOMES:
            counts, seconds = merged.get(outcome, ([0] * (len(buckets) + 1), 0.0))
            cumulative, running = [], 0
            for bound, count in zip((*(f"{b:g}" for b in buckets), "+Inf"), counts, strict=True):
                running += count
                cumulative.append((bound, running))
            family.add_metric([outcome], cumulative, sum_value=seconds)
        return family


def make_registry(state: TargetState) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(state))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
