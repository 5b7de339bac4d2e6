"""What one comparison run was asked to do: a validated value object, and the load plan it implies.

`RunConfig` holds the user's choices and refuses bad ones at construction with one line that names the
option and what is allowed; the scenario (comparison/scenarios/) checks what is its own. `build_plan`
turns a scenario and the measured capacity C into what each Locust process is told (comparison/plan.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from comparison.errors import ConfigError, check_range, shown
from comparison.inputs import host_problem, path_problem, paths_given, reserved_options
from comparison.plan import DEFAULT_DRAIN_S, DEFAULT_SLO_MS, LoadPlan
from comparison.scenarios import DEFAULT, REGISTRY, scenario_of
from comparison.summary import SETTLE_S
from target_server.numbers import parse_int

if TYPE_CHECKING:
    from comparison.external import ExternalWorkers
    from comparison.own_service import ServiceOptions
    from comparison.user_locustfile import UserLocustfile

__all__ = ["SETTLE_S", "ConfigError", "LoadPlan", "RunConfig", "build_plan", "parse_mix"]

SCENARIOS: dict[str, str] = {name: scenario.help for name, scenario in REGISTRY.items()}
DEFAULT_SCENARIO = DEFAULT
DEFAULT_MULTIPLIER = {name: scenario.multiplier for name, scenario in REGISTRY.items()}
MAX_MIX_USERS = 100  # users per class and client instance in --mix
MIX = "mix"  # the file prefix of a --mix run, whose files hold every class
DEFAULT_CLIENTS = (
    "HammerClient",
    "ThrottledClient",
    "BreakerClient",
    "PooledClient",
    "TimeoutClient",
    "CombinedClient",
    "AdaptiveClient",
)
DEFAULT_DURATION_S = 30.0
MAX_SLO_MS = 600_000.0
MAX_DRAIN_S = 120.0
# the default --duration where 30 s is too short
SCENARIO_DURATION_S = {n: s.duration_s for n, s in REGISTRY.items() if s.duration_s != DEFAULT_DURATION_S}
MIN_DURATION_S = 5.0
MAX_DURATION_S = 600.0
MAX_RATE = 5000.0
MAX_WORKERS = 16  # Locust worker processes per class (`--workers`); each is one client instance
# The scenarios that change the server's capacity mid-run, and the factor on sync_work_ms of each.
WORK_FACTORS = {n: s.work_factor for n, s in REGISTRY.items() if s.work_factor is not None}


@dataclass(frozen=True)
class RunConfig:
    """Everything one `python -m comparison` run needs. Invalid values raise ConfigError."""

    scenario: str = DEFAULT_SCENARIO
    clients: tuple[str, ...] = DEFAULT_CLIENTS
    duration_s: float = DEFAULT_DURATION_S
    host: str | None = None
    capacity: float | None = None
    rate_multiplier: float | None = None
    launch_rate: float | None = None
    results_dir: Path = Path("results")
    probe_s: float = 3.0
    slo_ms: float = DEFAULT_SLO_MS
    drain_s: float = DEFAULT_DRAIN_S
    passthrough: tuple[str, ...] = field(default=())
    workers: int = 1
    target_workers: int = 1
    priority_shedding: bool = False  # the embedded target's --priority-shedding, from the first class on
    mix: tuple[tuple[str, int], ...] = ()
    service: ServiceOptions | None = None  # the request, guard rails and gates (comparison/own_service.py)
    scenario_options: Any = None  # the scenario's own options (comparison/scenarios/<name>.py)
    locustfile: UserLocustfile | None = None  # --locustfile: the user's own classes (user_locustfile.py)
    external: ExternalWorkers | None = None  # --external-workers: workers on other hosts (external.py)

    @property
    def allow_remote(self) -> bool:
        """The run's own --allow-remote (typed now, never read from a rerun's folder)."""
        return bool(self.service and self.service.allow_remote)

    def __post_init__(self) -> None:
        if self.scenario not in REGISTRY:
            raise ConfigError("--scenario", f"{self.scenario!r} is not one of {', '.join(REGISTRY)}")
        if not self.clients:
            raise ConfigError("--clients", "name at least one client class, e.g. HammerClient,BreakerClient")
        duplicates = sorted({c for c in self.clients if self.clients.count(c) > 1})
        if duplicates:
            raise ConfigError("--clients", f"{duplicates[0]} is named twice")
        for name in self.clients:
            if not (name.isascii() and name.isidentifier()):
                raise ConfigError("--clients", f"{name!r} is not a class name")
        check_range("--duration", self.duration_s, MIN_DURATION_S, MAX_DURATION_S, "seconds")
        if self.capacity is not None:
            check_range("--capacity", self.capacity, 1, MAX_RATE, "requests/s")
        if self.rate_multiplier is not None:
            check_range("--rate-multiplier", self.rate_multiplier, 0.05, 20, "x capacity")
        if self.launch_rate is not None:
            check_range("--launch-rate", self.launch_rate, 1, MAX_RATE, "requests/s")
        if self.rate_multiplier is not None and self.launch_rate is not None:
            raise ConfigError("--launch-rate", "give either --launch-rate or --rate-multiplier, not both")
        if self.host is not None and (problem := host_problem(self.host)):
            raise ConfigError("--host", f"{shown(self.host)} {problem}")
        check_range("--probe-seconds", self.probe_s, 1, 30, "seconds")
        check_range("--slo-ms", self.slo_ms, 1, MAX_SLO_MS, "milliseconds")
        check_range("--drain-s", self.drain_s, 0, MAX_DRAIN_S, "seconds")
        if self.external is not None:
            self._check_external(self.external)
        elif type(self.workers) is not int or not 1 <= self.workers <= MAX_WORKERS:
            raise ConfigError(
                "--workers", f"must be a whole number from 1 to {MAX_WORKERS}, got {self.workers!r}"
            )
        if type(self.target_workers) is not int or not 1 <= self.target_workers <= MAX_WORKERS:
            raise ConfigError(
                "--target-workers",
                f"must be a whole number from 1 to {MAX_WORKERS}, got {self.target_workers!r}",
            )
        if self.mix and tuple(name for name, _ in self.mix) != self.clients:
            raise ConfigError("--mix", "names the classes of the run; leave out --clients")
        if self.target_workers > 1 and self.host is not None:
            raise ConfigError("--target-workers", "starts the embedded target; leave out --host to use it")
        if self.priority_shedding and (self.host is not None or self.target_workers > 1):
            raise ConfigError(
                "--priority-shedding",
                "is a flag of the embedded single-process target; leave out "
                + (
                    "--host (start your target with --priority-shedding instead)"
                    if self.host
                    else "--target-workers"
                ),
            )
        reserved = reserved_options(self.passthrough)
        if reserved:
            named = ", ".join(t if t == o else f"{t!r} ({o})" for t, o in reserved)
            raise ConfigError(
                "after --",
                f"{named}: set by the runner for every class; use the runner's own options instead",
            )
        for value in paths_given(self.passthrough):
            if problem := path_problem(value):
                raise ConfigError("--path", f"{shown(value)} {problem}")
        scenario_of(self.scenario).check(self)

    def _check_external(self, external: ExternalWorkers) -> None:
        """With workers on other hosts: as many client instances as workers, and a target they can reach."""
        if self.workers != external.count:
            raise ConfigError(
                "--external-workers",
                "give either --workers (processes on this machine) or --external-workers (workers on "
                "other hosts), not both",
            )
        if self.host is None:
            raise ConfigError(
                "--external-workers",
                "give --host: the embedded target listens on this machine's loopback, which workers on "
                "other hosts cannot reach",
            )


def parse_mix(text: str) -> tuple[tuple[str, int], ...]:
    """`NaiveRetryClient:1,AdaptiveClient:3` -> (("NaiveRetryClient", 1), ("AdaptiveClient", 3)).
    Users per client instance; raises ConfigError with one line."""
    found: list[tuple[str, int]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, raw = item.partition(":")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise ConfigError(
                "--mix", f"{item!r} is not CLASS:USERS, e.g. NaiveRetryClient:1,AdaptiveClient:3"
            )
        try:
            users = parse_int(raw)  # ASCII digits only: no Arabic-Indic, full-width or 0_1
        except ValueError:
            raise ConfigError("--mix", f"{item!r}: {raw.strip()!r} is not a whole number of users") from None
        if not 1 <= users <= MAX_MIX_USERS:
            raise ConfigError("--mix", f"{item!r}: users must be from 1 to {MAX_MIX_USERS}")
        if any(name == other for other, _ in found):
            raise ConfigError("--mix", f"{name} is named twice")
        found.append((name, users))
    if len(found) < 2:
        raise ConfigError("--mix", "name at least two classes, e.g. NaiveRetryClient:1,AdaptiveClient:3")
    return tuple(found)


def build_plan(config: RunConfig, capacity_rps: float, reduced_capacity_rps: float | None = None) -> LoadPlan:
    """The scenario's plan for one process, with the run's SLO and drain, split over its workers and
    shared by its mix."""
    plan = scenario_of(config.scenario).shape(config, capacity_rps, reduced_capacity_rps)
    plan = replace(plan, slo_ms=config.slo_ms, drain_s=config.drain_s).split(config.workers)
    return plan.mixed(config.mix)
