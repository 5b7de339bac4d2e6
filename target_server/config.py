"""The target server's configuration: one validated value object, whatever its values came from.

Each value is checked by its option (`target_server.options`: the table of flags, env vars, ranges and
help) in `Config.__post_init__`, and so are the combinations no single option can judge (the blocking-work
cap, the shedding thresholds' order, a latency profile's fit), so a bad value is refused whether it came
from the command line, the environment (`target_server.config_sources`), a test or an admin request.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from target_server.faults import Fault
from target_server.latency_profile import LatencyProfile, ProfileError, load_profile
from target_server.options import OPTIONS, RUNTIME_OPTIONS, ConfigError


@dataclass(frozen=True)
class Config:
    """Everything the server needs to start. Invalid values raise ConfigError at construction."""

    host: str = "127.0.0.1"
    port: int = 3000
    expansion: int = 1
    task_delay_ms: float = 20.0
    sync_work_ms: float = 10.0
    lag_interval_ms: float = 500.0
    lag_smoothing: float = 1 / 3
    max_lag_ms: float = 70.0
    reject_if_too_busy: bool = False
    priority_shedding: bool = False
    sheddable_lag_ms: float | None = None
    retry_after_s: int = 1
    log_interval_ms: float = 250.0
    quiet: bool = False
    max_sockets: int = 256
    backlog: int = 128
    status_port: int = 0
    header_timeout_s: float = 10.0
    idle_timeout_s: float = 5.0
    max_work_ms: float = 1000.0
    skip_abandoned: bool = True
    latency_profile: str | None = None
    cpu_share: float | None = None
    drop_expired: bool = False
    stats_dir: str | None = None
    seed: int | None = None
    otel: bool = False
    faults: tuple[Fault, ...] = field(default=())
    # loaded from latency_profile at construction (and carried over by with_changes)
    profile: LatencyProfile | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        for option in OPTIONS:
            object.__setattr__(self, option.name, option.check(getattr(self, option.name)))
        if not isinstance(self.faults, tuple) or not all(isinstance(f, Fault) for f in self.faults):
            raise ConfigError("faults", "must be a tuple of Fault")
        check_work(self.expansion, self.sync_work_ms, self.max_work_ms)
        check_shedding(self.max_lag_ms, self.sheddable_lag_ms)
        self._load_profile()

    def _load_profile(self) -> None:
        """Read --latency-profile (once: a copy keeps the loaded one). Raises ConfigError."""
        if self.latency_profile is None:
            if self.cpu_share is not None:
                raise ConfigError("cpu_share", "only means something with --latency-profile")
            object.__setattr__(self, "profile", None)
            return
        loaded = self.profile
        if (
            loaded is None
            or loaded.source != self.latency_profile
            or (self.cpu_share is not None and loaded.cpu_share != self.cpu_share)
        ):
            try:
                loaded = load_profile(self.latency_profile, self.cpu_share)
            except ProfileError as error:
                raise ConfigError("latency_profile", str(error)) from None
        if self.expansion != 1:
            raise ConfigError(
                "expansion", "must be 1 with --latency-profile (each request draws one latency)"
            )
        if loaded.max_work_ms > self.max_work_ms:
            raise ConfigError(
                "max_work_ms",
                f"the profile's slowest request blocks the loop for {loaded.max_work_ms:.10g} ms "
                f"(cpu_share x its largest latency), over the cap of {self.max_work_ms:.10g} ms",
            )
        object.__setattr__(self, "profile", loaded)

    def with_changes(self, changes: Mapping[str, Any]) -> Config:
        """A copy with some runtime options changed; anything else is refused by name."""
        for name in changes:
            if name not in RUNTIME_OPTIONS:
                raise ConfigError(
                    name, f"cannot be changed at run time; allowed: {', '.join(RUNTIME_OPTIONS)}"
                )
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The effective config for /stats: every option plus the start-up faults."""
        data: dict[str, Any] = {option.name: getattr(self, option.name) for option in OPTIONS}
        data["faults"] = [fault.to_json() for fault in self.faults]
        return data


def check_work(expansion: int, sync_work_ms: float, max_work_ms: float) -> None:
    """One request blocks the loop for expansion x sync_work_ms; past `max_work_ms` it would wedge the
    server (and delay SIGTERM) for that long, so the combination is refused wherever it is set."""
    total = expansion * sync_work_ms
    if total > max_work_ms:
        raise ConfigError(
            "max_work_ms",
            f"expansion x sync_work_ms = {expansion} x {sync_work_ms:.10g} = {total:.10g} ms is over the "
            f"cap of {max_work_ms:.10g} ms of blocking work per request (max_work_ms)",
        )


def check_shedding(max_lag_ms: float, sheddable_lag_ms: float | None) -> None:
    """Sheddable requests are shed first: their threshold may not be above the critical one."""
    if sheddable_lag_ms is not None and sheddable_lag_ms > max_lag_ms:
        raise ConfigError(
            "sheddable_lag_ms",
            f"must be at most max_lag_ms ({max_lag_ms:.10g}), so that sheddable requests are shed first; "
            f"got {sheddable_lag_ms:.10g}",
        )
