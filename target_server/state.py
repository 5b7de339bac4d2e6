"""Everything that changes while the server runs, in one place per process.

`TargetState` owns the lag sampler, the counters, the admin-controlled state (faults, run-time config
overrides, the reset epoch) and the background greenlets (lag sampler, status log, and under gunicorn the
publisher that shares counters with the other workers). Its snapshots (snapshot.py) are the one source
of the numbers that /stats and /metrics show.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import random
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import gevent

from target_server.busy import Gauges, LagSampler, Totals, format_status
from target_server.cluster import Cluster, default_gunicorn_dir, master_pid, under_gunicorn
from target_server.config import Config
from target_server.control import ControlState
from target_server.criticality import shed_chance
from target_server.faults import ActiveFault, Fault, FaultBook
from target_server.latency_profile import QuantileSequence
from target_server.metrics import RequestDurations
from target_server.options import OPTION_BY_NAME, RUNTIME_OPTIONS, ConfigError
from target_server.snapshot import server_snapshot, worker_snapshot

PUBLISH_INTERVAL_S = 0.2
T = TypeVar("T")


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

    def sockets(self) -> int:
        return self.gauges.open_sockets + self._tracked_open()

    def sockets_closed(self, sockets: int) -> int:
        """Connections closed since start or reset. Under gunicorn no close is seen: accepted minus open."""
        totals = self.totals
        return max(0, totals.sockets_accepted - sockets) if self._tracking else totals.sockets_closed

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
        self._rebuild_config()  # drop expired overrides: a change is checked against the config in force
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

    def local_snapshot(self) -> dict[str, Any]:
        """This process's numbers, in the shape workers publish to each other (snapshot.py)."""
        return worker_snapshot(self)

    def snapshot(self) -> dict[str, Any]:
        """The whole server: this process plus, under gunicorn, every other live worker. Served as /stats."""
        if self.cluster is not None:
            self._refresh_control()
        return server_snapshot(self)


def shedding_on(config: Config) -> bool:
    """--priority-shedding is a shedding mode: it turns the toobusy check on by itself."""
    return config.reject_if_too_busy or config.priority_shedding
