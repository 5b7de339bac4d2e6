"""/metrics: the /stats snapshot in Prometheus text format.

A custom collector reads `TargetState.snapshot()` at scrape time, so Prometheus and /stats can never
disagree and the request path does no extra bookkeeping. Each app gets its own registry (no global state).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from target_server.state import TargetState

CONTENT_TYPE = CONTENT_TYPE_LATEST

GAUGES = (
    ("lag_ms", "target_lag_ms", "Smoothed event-loop lag (toobusy), max over workers"),
    ("in_flight", "target_in_flight", "/doWork requests being handled"),
    ("concurrent", "target_concurrent_tasks", "Tasks in their non-blocking wait"),
    ("sockets", "target_sockets", "Open client connections"),
    ("shed_probability", "target_shed_probability", "Chance that a /doWork request is shed now"),
    ("uptime_s", "target_uptime_seconds", "Seconds since start"),
    (
        "wasted_work_ratio",
        "target_wasted_work_ratio",
        "Share of /doWork CPU time spent for clients that had already given up, since start or reset",
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

CPU_COUNTERS = (  # /stats has milliseconds; Prometheus wants seconds
    ("work_cpu_ms_total", "target_work_cpu_seconds", "CPU time of /doWork's CPU-bound part"),
    (
        "wasted_cpu_ms_total",
        "target_wasted_cpu_seconds",
        "CPU time of /doWork's CPU-bound part spent for clients that had already given up",
    ),
)


class StatsCollector(Collector):
    def __init__(self, state: TargetState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        stats = self.state.snapshot()
        for key, name, text in GAUGES:
            yield GaugeMetricFamily(name, text, value=stats[key])
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
        for key, name, text in CPU_COUNTERS:
            yield CounterMetricFamily(name, text, value=stats[key] / 1000)
        yield GaugeMetricFamily("target_workers", "Worker processes summed", value=stats["workers"]["count"])
        config = stats["config"]
        yield GaugeMetricFamily("target_sync_work_ms", "Effective sync_work_ms", value=config["sync_work_ms"])
        yield GaugeMetricFamily("target_max_lag_ms", "Effective max_lag_ms", value=config["max_lag_ms"])


def make_registry(state: TargetState) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(state))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
