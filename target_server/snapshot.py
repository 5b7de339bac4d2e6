"""The numbers /stats shows (and /metrics, which reads them): one process's, and the whole server's.

A process's snapshot (`worker_snapshot`) is also what a gunicorn worker publishes for the others
(cluster.py); whoever answers /stats adds them up (`server_snapshot`). A worker that has not yet seen
the latest /admin/reset counts as zero, so totals never mix epochs.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Protocol

from target_server.busy import DROP_REASONS, shed_probability
from target_server.criticality import LEVELS, SHEDDABLE, shed_chance, sheddable_lag
from target_server.faults import KINDS

if TYPE_CHECKING:
    from target_server.busy import Gauges, LagSampler, Totals
    from target_server.cluster import Cluster
    from target_server.config import Config
    from target_server.control import ControlState
    from target_server.metrics import RequestDurations

SCHEMA = 1
CRITICALITY_ENDS = ("requests", "completed", "rejected")  # by_criticality_total's counts per class


class LiveState(Protocol):
    """What the snapshots read of `target_server.state.TargetState`. A protocol, so this module needs
    nothing from `state`, which calls it."""

    totals: Totals
    gauges: Gauges
    lag: LagSampler
    durations: RequestDurations
    epoch: int
    started_mono: float
    started_wall: float
    cluster: Cluster | None
    control: ControlState
    status_port: int | None

    @property
    def config(self) -> Config: ...

    def wall(self) -> float: ...

    def sockets(self) -> int: ...

    def sockets_closed(self, sockets: int) -> int: ...


def worker_snapshot(state: LiveState) -> dict[str, Any]:
    """This process's numbers, in the shape workers publish to each other."""
    totals = state.totals
    sockets = state.sockets()
    state.gauges.note_sockets(sockets)  # under gunicorn, sockets are only counted here
    closed = state.sockets_closed(sockets)
    return {
        "pid": os.getpid(),
        "uptime_s": round(time.monotonic() - state.started_mono, 3),
        "epoch": state.epoch,
        "lag_ms": round(state.lag.lag_ms, 3),
        "in_flight": state.gauges.in_flight,
        "concurrent": state.gauges.concurrent,
        "sockets": sockets,
        "peaks": {
            "lag_ms": round(state.lag.peak_ms, 3),
            "in_flight": state.gauges.peak_in_flight,
            "concurrent": state.gauges.peak_concurrent,
            "sockets": state.gauges.peak_sockets,
        },
        "totals": {
            "requests": totals.requests,
            "completed": totals.completed,
            "rejected": totals.rejected,
            "errors": totals.errors,
            "bad_requests": totals.bad_requests,
            "abandoned": totals.abandoned,
            "expired": totals.expired,
            "work_cpu_ms": round(totals.work_cpu_ms, 3),
            "wasted_cpu_ms": round(totals.wasted_cpu_ms, 3),
            "tasks_completed": totals.tasks_completed,
            "sockets_accepted": totals.sockets_accepted,
            "sockets_closed": closed,
            "faulted": {kind: totals.faulted.get(kind, 0) for kind in KINDS},
            "dropped": {reason: totals.dropped.get(reason, 0) for reason in DROP_REASONS},
            "by_criticality": {level: dict(totals.by_criticality.get(level, {})) for level in LEVELS},
        },
        "durations": state.durations.to_json(),
    }


def server_snapshot(state: LiveState) -> dict[str, Any]:
    """The whole server: this process plus, under gunicorn, every other live worker. Served as /stats."""
    now = state.wall()
    config = state.config
    workers = [worker_snapshot(state)]
    if state.cluster is not None:
        workers += state.cluster.peers(now)
    epoch = state.control.reset_epoch
    counted = [w for w in workers if w.get("epoch") == epoch]  # a worker not yet reset counts as 0
    lag = max(w["lag_ms"] for w in workers)

    def total(name: str) -> int:
        return sum(w["totals"][name] for w in counted)

    work_cpu = sum(w["totals"].get("work_cpu_ms", 0.0) for w in counted)
    wasted_cpu = sum(w["totals"].get("wasted_cpu_ms", 0.0) for w in counted)

    reset_at = state.control.reset_at
    return {
        "schema": SCHEMA,
        "time": round(now, 3),
        "uptime_s": max(w["uptime_s"] for w in workers),
        "since_reset_s": round(now - (reset_at if reset_at is not None else state.started_wall), 3),
        "reset_count": epoch,
        "lag_ms": lag,
        "max_lag_ms": config.max_lag_ms,
        "shed_probability": round(shed_probability(lag, config.max_lag_ms), 4),
        # --priority-shedding: the sheddable class's threshold and chance (what it would be when off)
        "sheddable_lag_ms": sheddable_lag(config.max_lag_ms, config.sheddable_lag_ms),
        "sheddable_shed_probability": round(
            shed_chance(SHEDDABLE, lag, config.max_lag_ms, config.sheddable_lag_ms, True), 4
        ),
        "in_flight": sum(w["in_flight"] for w in workers),
        "concurrent": sum(w["concurrent"] for w in workers),
        "sockets": sum(w["sockets"] for w in workers),
        # Since start or the last reset. Under gunicorn, the sum of each worker's peak (an upper bound).
        "peak_lag_ms": max(w["peaks"]["lag_ms"] for w in counted) if counted else lag,
        "peak_in_flight": sum(w["peaks"]["in_flight"] for w in counted),
        "peak_concurrent": sum(w["peaks"]["concurrent"] for w in counted),
        "peak_sockets": sum(w["peaks"]["sockets"] for w in counted),
        "requests_total": total("requests"),
        "completed_total": total("completed"),
        "rejected_total": total("rejected"),
        "errors_total": total("errors"),
        "bad_requests_total": total("bad_requests"),
        "abandoned_total": total("abandoned"),
        "tasks_completed_total": total("tasks_completed"),
        "sockets_accepted_total": total("sockets_accepted"),
        "sockets_closed_total": total("sockets_closed"),
        "expired_total": sum(w["totals"].get("expired", 0) for w in counted),
        # CPU of /doWork's CPU-bound part, and the part spent for clients that had already given up
        # (deadline passed when it finished, or connection closed); the ratio since start or reset.
        "work_cpu_ms_total": round(work_cpu, 3),
        "wasted_cpu_ms_total": round(wasted_cpu, 3),
        "wasted_work_ratio": round(wasted_cpu / work_cpu, 4) if work_cpu > 0 else 0.0,
        "faulted_total": {kind: sum(w["totals"]["faulted"][kind] for w in counted) for kind in KINDS},
        "dropped_total": {
            reason: sum(w["totals"].get("dropped", {}).get(reason, 0) for w in counted)
            for reason in DROP_REASONS
        },
        # /doWork requests by their Hammerlab-Criticality header (none: critical) and how they ended
        "by_criticality_total": {
            level: {
                ended: sum(_criticality(w, level).get(ended, 0) for w in counted)
                for ended in CRITICALITY_ENDS
            }
            for level in LEVELS
        },
        "faults": [fault.to_json(now) for fault in state.control.faults.active(now)],
        "overrides": {
            name: {
                "value": value,
                "remaining_s": None if until is None else round(max(0.0, until - now), 3),
            }
            for name, (value, until) in state.control.overrides.items()
        },
        "config": config.to_json(),
        "status_port": state.status_port,
        "workers": {
            "count": len(workers),
            "mode": "gunicorn" if state.cluster is not None else "single",
            "answered_by": os.getpid(),
            "pids": sorted(w["pid"] for w in workers),
            "lag_ms": {str(w["pid"]): w["lag_ms"] for w in workers},
            "requests_total": {str(w["pid"]): w["totals"]["requests"] for w in counted},
        },
    }


def _criticality(worker: dict[str, Any], level: str) -> dict[str, int]:
    """One worker's counts for one criticality (an older worker has none)."""
    return worker["totals"].get("by_criticality", {}).get(level, {})
