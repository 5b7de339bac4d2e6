"""Everything that changes while the server runs, in one place per process.

`TargetState` owns the lag sampler, the counters, the admin-controlled state (faults, run-time config
overrides, the reset epoch) and the background greenlets (lag sampler, status log, and under gunicorn the
publisher that shares counters with the other workers). `snapshot()` is the one source of the numbers that
/stats, /metrics and the status log show.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import random
import sys
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import gevent

from target_server.busy import DROP_REASONS, Gauges, LagSampler, Totals, format_status, shed_probability
from target_server.cluster import Cluster, default_gunicorn_dir, master_pid, under_gunicorn
from target_server.config import Config
from target_server.criticality import LEVELS, SHEDDABLE, shed_chance, sheddable_lag
from target_server.faults import KINDS, ActiveFault, Fault, FaultBook
from target_server.latency_profile import QuantileSequence
from target_server.metrics import RequestDurations
from target_server.options import OPTION_BY_NAME, RUNTIME_OPTIONS, ConfigError

SCHEMA = 1
CRITICALITY_ENDS = ("requests", "completed", "rejected")  # by_criticality_total's counts per class
PUBLISH_INTERVAL_S = 0.2
T = TypeVar("T")


class ControlState:
    """What /admin changes. Serialisable, because gunicorn workers share it through a file."""

    def __init__(self, faults: FaultBook) -> None:
        self.faults = faults
        self.overrides: dict[str, tuple[Any, float | None]] = {}
        self.reset_epoch = 0
        self.reset_at: float | None = None
        self.owner = 0

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "faults": [fault.to_json(now) for fault in self.faults.active(now)],
            "next_fault_id": self.faults.next_id,
            "overrides": {name: {"value": v, "until": until} for name, (v, until) in self.overrides.items()},
            "reset_epoch": self.reset_epoch,
            "reset_at": self.reset_at,
        }

    def adopt(self, data: dict[str, Any]) -> None:
        self.owner = int(data.get("owner", 0))
        self.faults.replace_all(ActiveFault.from_json(item) for item in data.get("faults", ()))
        self.faults.next_id = int(data.get("next_fault_id", 1))
        self.overrides = {
            name: (item["value"], item["until"]) for name, item in data.get("overrides", {}).items()
        }
        self.reset_epoch = int(data.get("reset_epoch", 0))
        self.reset_at = data.get("reset_at")


class TargetState:
    """The live state of one server process. Cooperative (gevent): no locks around counters."""

    def __init__(self, config: Config, *, wall: Callable[[], float] = time.time) -> None:
        self.base = config
        self.wall = wall
        self.rng = random.Random(config.seed)
        self.control = ControlState(FaultBook(self.rng))
        now = wall()
        for fault in config.faults:
            self.control.faults.add(fault, now)
        self.lag = LagSampler(config.lag_interval_ms, config.lag_smoothing)
        self.totals = Totals()
        self.gauges = Gauges()
        self.durations = RequestDurations()  # /metrics' request-duration histogram
        self.quantiles = QuantileSequence(random.Random(config.seed))  # its own: self.rng draws as before
        self.epoch = 0
        self.started_wall = now
        self.started_mono = time.monotonic()
        self.cluster: Cluster | None = None
        self._tracked: dict[int, weakref.ref[Any]] = {}
        self._tracking = False  # True under gunicorn, where requests reveal the sockets
        self._effective = config
        self._effective_until: float | None = None
        self._pid: int | None = None
        self._greenlets: list[gevent.Greenlet] = []
        self.status_port: int | None = None  # the status series listener's port (status_log), if any

    # -- life cycle ---------------------------------------------------------------------------------------

    def ensure_started(self) -> None:
        """Start the background greenlets once per process (again after a fork, e.g. gunicorn --preload)."""
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self.started_mono = time.monotonic()
        self._greenlets = [gevent.spawn(self.lag.run)]
        if under_gunicorn():
            self.cluster = Cluster(self.base.stats_dir or default_gunicorn_dir())
            self._join_cluster()
            self._greenlets.append(gevent.spawn(self._cluster_loop))
        if not self.base.quiet:
            self._greenlets.append(gevent.spawn(self._log_loop))

    def bound_to(self, port: int) -> None:
        """Record the port actually bound (`--port 0` picks one), so that /stats shows the real one."""
        self.base = dataclasses.replace(self.base, port=port)
        self._rebuild_config()

    def stop(self) -> None:
        gevent.killall(self._greenlets, block=False)
        self._greenlets = []
        if self.cluster is not None:
            self.cluster.withdraw()

    # -- the effective config -------------------------------------------------------------------------------

    @property
    def config(self) -> Config:
        """The start-up config with any unexpired /admin/config overrides applied."""
        if self._effective_until is not None and self.wall() >= self._effective_until:
            self._rebuild_config()
        return self._effective

    def _rebuild_config(self) -> None:
        now = self.wall()
        live = {n: (v, u) for n, (v, u) in self.control.overrides.items() if u is None or u > now}
        self.control.overrides = live
        self._effective = self.base.with_changes({n: v for n, (v, _) in live.items()}) if live else self.base
        self._effective_until = min((u for _, u in live.values() if u is not None), default=None)

    # -- the request path ----------------------------------------------------------------------------------

    def should_shed(self, config: Config, criticality: str) -> bool:
        """toobusy's verdict for one request, when shedding is on; with --priority-shedding, a sheddable
        request is judged against the lower sheddable_lag_ms (criticality.py)."""
        if not shedding_on(config):
            return False
        probability = shed_chance(
            criticality, self.lag.lag_ms, config.max_lag_ms, config.sheddable_lag_ms, config.priority_shedding
        )
        return probability > 0 and self.rng.random() < probability

    def track_socket(self, sock: Any) -> None:
        """Under gunicorn the worker accepts connections, so count the ones requests arrive on."""
        self._tracking = True
        key = id(sock)
        ref = self._tracked.get(key)
        if ref is not None and ref() is sock:
            return
        self._tracked[key] = weakref.ref(sock, lambda _ref, key=key: self._tracked.pop(key, None))
        self.totals.sockets_accepted += 1

    def socket_opened(self) -> None:
        self.gauges.open_sockets += 1
        self.gauges.note_sockets(self.gauges.open_sockets)
        self.totals.sockets_accepted += 1

    def socket_closed(self) -> None:
        self.gauges.open_sockets -= 1
        self.totals.sockets_closed += 1

    def _tracked_open(self) -> int:
        count = 0
        for ref in list(self._tracked.values()):
            sock = ref()
            if sock is not None and sock.fileno() != -1:
                count += 1
        return count

    # -- admin operations -----------------------------------------------------------------------------------

    def mutate(self, operation: Callable[[ControlState, float], T]) -> T:
        """Apply an admin change here, and under gunicorn to the shared control file for every worker."""
        now = self.wall()
        if self.cluster is None:
            result = operation(self.control, now)
        else:
            with self.cluster.locked():
                shared = self.cluster.read_control()
                if shared is not None and shared.get("owner") == self.control.owner:
                    self.control.adopt(shared)
                result = operation(self.control, now)
                self.cluster.write_control(self.control.to_json(now))
        self._control_changed()
        return result

    def add_fault(self, fault: Fault) -> ActiveFault:
        return self.mutate(lambda control, now: control.faults.add(fault, now))

    def remove_fault(self, fault_id: str) -> bool:
        return self.mutate(lambda control, now: control.faults.remove(fault_id))

    def clear_faults(self) -> int:
        return self.mutate(lambda control, now: control.faults.clear())

    def set_overrides(self, changes: dict[str, Any], duration_s: float | None) -> Config:
        """Change run-time options, for `duration_s` seconds or until cleared. Raises ConfigError."""
        for name, value in changes.items():
            if name not in RUNTIME_OPTIONS:
                raise ConfigError(
                    name, f"cannot be changed at run time; allowed: {', '.join(RUNTIME_OPTIONS)}"
                )
            changes[name] = OPTION_BY_NAME[name].check(value)
        merged = {n: v for n, (v, _) in self.control.overrides.items()} | changes
        self.base.with_changes(merged)  # validate the combination before anything is stored

        def apply(control: ControlState, now: float) -> None:
            until = None if duration_s is None else now + duration_s
            for name, value in changes.items():
                control.overrides[name] = (value, until)

        self.mutate(apply)
        return self.config

    def clear_overrides(self) -> None:
        self.mutate(lambda control, now: control.overrides.clear())

    def reset(self) -> int:
        """Zero the totals (in every worker). Returns the new epoch."""

        def apply(control: ControlState, now: float) -> int:
            control.reset_epoch += 1
            control.reset_at = now
            return control.reset_epoch

        return self.mutate(apply)

    def _control_changed(self) -> None:
        self._rebuild_config()
        if self.control.reset_epoch > self.epoch:
            self.totals.zero()
            self.durations.zero()
            self.gauges.restart_peaks(self.sockets())
            self.lag.peak_ms = self.lag.lag_ms
            self.epoch = self.control.reset_epoch

    # -- multi-worker sharing ----------------------------------------------------------------------------

    def _join_cluster(self) -> None:
        assert self.cluster is not None
        with self.cluster.locked():
            shared = self.cluster.read_control()
            if shared is not None and shared.get("owner") == master_pid():
                self.control.adopt(shared)
            else:
                self.control.owner = master_pid()
                self.cluster.write_control(self.control.to_json(self.wall()))
        self._control_changed()
        self.cluster.publish(self.local_snapshot())
        atexit.register(self.cluster.withdraw)  # a worker that exits cleanly leaves no file behind

    def _refresh_control(self) -> None:
        """Adopt what another worker's admin request changed (cheap when nothing did: one stat call)."""
        assert self.cluster is not None
        shared = self.cluster.read_control(only_if_changed=True)
        if shared is not None and shared.get("owner") == self.control.owner:
            self.control.adopt(shared)
            self._control_changed()

    def _cluster_loop(self) -> None:
        assert self.cluster is not None
        while True:
            self._refresh_control()
            self.cluster.publish(self.local_snapshot())
            gevent.sleep(PUBLISH_INTERVAL_S)

    # -- observability ---------------------------------------------------------------------------------------

    def _log_loop(self) -> None:
        prefix = f"[{os.getpid()}] " if self.cluster is not None else ""
        completed, rejected, epoch = self.totals.completed, self.totals.rejected, self.epoch
        while True:
            gevent.sleep(self.base.log_interval_ms / 1000)
            if epoch != self.epoch:
                completed, rejected, epoch = 0, 0, self.epoch
            text = format_status(
                self.lag.lag_ms,
                self.gauges.concurrent,
                self.totals.completed - completed,
                self.sockets(),
                self.totals.rejected - rejected if shedding_on(self.config) else None,
            )
            completed, rejected = self.totals.completed, self.totals.rejected
            if prefix:
                text = "\n".join(prefix + line for line in text.splitlines())
            print(text, flush=True)

    def sockets(self) -> int:
        return self.gauges.open_sockets + self._tracked_open()

    def local_snapshot(self) -> dict[str, Any]:
        """This process's numbers, in the shape workers publish to each other."""
        totals = self.totals
        sockets = self.sockets()
        self.gauges.note_sockets(sockets)  # under gunicorn, sockets are only counted here
        closed = max(0, totals.sockets_accepted - sockets) if self._tracking else totals.sockets_closed
        return {
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - self.started_mono, 3),
            "epoch": self.epoch,
            "lag_ms": round(self.lag.lag_ms, 3),
            "in_flight": self.gauges.in_flight,
            "concurrent": self.gauges.concurrent,
            "sockets": sockets,
            "peaks": {
                "lag_ms": round(self.lag.peak_ms, 3),
                "in_flight": self.gauges.peak_in_flight,
                "concurrent": self.gauges.peak_concurrent,
                "sockets": self.gauges.peak_sockets,
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
            "durations": self.durations.to_json(),
        }

    def snapshot(self) -> dict[str, Any]:
        """The whole server: this process plus, under gunicorn, every other live worker. Served as /stats."""
        if self.cluster is not None:
            self._refresh_control()
        now = self.wall()
        config = self.config
        workers = [self.local_snapshot()]
        if self.cluster is not None:
            workers += self.cluster.peers(now)
        epoch = self.control.reset_epoch
        counted = [w for w in workers if w.get("epoch") == epoch]  # a worker not yet reset counts as 0
        lag = max(w["lag_ms"] for w in workers)

        def total(name: str) -> int:
            return sum(w["totals"][name] for w in counted)

        work_cpu = sum(w["totals"].get("work_cpu_ms", 0.0) for w in counted)
        wasted_cpu = sum(w["totals"].get("wasted_cpu_ms", 0.0) for w in counted)

        reset_at = self.control.reset_at
        return {
            "schema": SCHEMA,
            "time": round(now, 3),
            "uptime_s": max(w["uptime_s"] for w in workers),
            "since_reset_s": round(now - (reset_at if reset_at is not None else self.started_wall), 3),
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
            "faults": [fault.to_json(now) for fault in self.control.faults.active(now)],
            "overrides": {
                name: {
                    "value": value,
                    "remaining_s": None if until is None else round(max(0.0, until - now), 3),
                }
                for name, (value, until) in self.control.overrides.items()
            },
            "config": config.to_json(),
            "status_port": self.status_port,
            "workers": {
                "count": len(workers),
                "mode": "gunicorn" if self.cluster is not None else "single",
                "answered_by": os.getpid(),
                "pids": sorted(w["pid"] for w in workers),
                "lag_ms": {str(w["pid"]): w["lag_ms"] for w in workers},
                "requests_total": {str(w["pid"]): w["totals"]["requests"] for w in counted},
            },
        }


def _criticality(worker: dict[str, Any], level: str) -> dict[str, int]:
    """One worker's counts for one criticality (an older worker has none)."""
    return worker["totals"].get("by_criticality", {}).get(level, {})


def shedding_on(config: Config) -> bool:
    """--priority-shedding is a shedding mode: it turns the toobusy check on by itself."""
    return config.reject_if_too_busy or config.priority_shedding


def log_line(message: str) -> None:
    """One line on stderr, for start-up and shutdown notices (the status log goes to stdout)."""
    print(message, file=sys.stderr, flush=True)
