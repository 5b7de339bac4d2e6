"""What one comparison run was asked to do: a validated value object, and the load plan it implies.

`RunConfig` holds the user's choices and refuses bad ones at construction with one line that names the
option and what is allowed. `LoadPlan` turns a scenario and the measured capacity C into what each
Locust process is told: users, per-user launch rate, the burst cycle, and when the outage starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from comparison.inputs import host_problem, path_problem, paths_given, reserved_options
from target_server.numbers import parse_int

if TYPE_CHECKING:
    from comparison.metastable import MetastableOptions
    from comparison.own_service import ServiceOptions

SCENARIOS: dict[str, str] = {
    "healthy": "0.8 x C, the seed's healthy pair",
    "cliff": "2 x C, the seed's falling over (100/s -> 200/s)",
    "burst": "cycles of 7 s quiet at 0.5 x C and 3 s peaks at 3 x C",
    "outage": "0.8 x C with a 10 s outage (503s) injected mid-run",
    "capacity": "1.1 x C while the server's sync_work_ms doubles for 20 s mid-run, then reverts",
    "capacity-up": "1.1 x C while the server's sync_work_ms halves for 20 s mid-run, then reverts",
    "fleet": "2 x C in total, split evenly over --workers N client instances (default 4)",
    "metastable": "0.9 x C, a 10 s trigger that halves capacity, 30 s after: does the client come back?",
    "phase-map": "the metastable run over a grid of offered load x trigger length (docs/metastable.md)",
}
DEFAULT_SCENARIO = "cliff"
DEFAULT_MULTIPLIER = {
    "healthy": 0.8, "cliff": 2.0, "burst": 3.0, "outage": 0.8, "capacity": 1.1, "capacity-up": 1.1,
    "fleet": 2.0, "metastable": 0.9, "phase-map": 0.9,
}  # fmt: skip
FLEET_WORKERS = 4  # the fleet scenario's default --workers
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
DEFAULT_SLO_MS = 1000.0
MAX_SLO_MS = 600_000.0
DEFAULT_DRAIN_S = 10.0
MAX_DRAIN_S = 120.0
# the default --duration where 30 s is too short
SCENARIO_DURATION_S = {"capacity": 50.0, "capacity-up": 50.0}
MIN_DURATION_S = 5.0
MAX_DURATION_S = 600.0
MAX_RATE = 5000.0
MAX_WORKERS = 16  # Locust worker processes per class (`--workers`); each is one client instance

# Burst: the peak is `PEAK_USERS` users, the quiet phase one user, each launching peak/PEAK_USERS per
# second, so the default 3 x C peak has a 0.5 x C floor, as the issue asks.
BURST_QUIET_S = 7.0
BURST_PEAK_S = 3.0
BURST_PEAK_USERS = 6

OUTAGE_S = 10.0
OUTAGE_MARGIN_S = 5.0  # at least this much healthy traffic before and after the outage
MIN_OUTAGE_DURATION_S = OUTAGE_S + 2 * OUTAGE_MARGIN_S

# Capacity: the server's sync_work_ms is multiplied by WORK_FACTOR for CAPACITY_CHANGE_S through
# POST /admin/config with duration_s, so the server restores itself. Goodput is judged per phase after
# SETTLE_S, so each side needs SETTLE_S plus a few seconds that are measured.
CAPACITY_CHANGE_S = 20.0
WORK_FACTOR = 2.0
# The scenarios that change the server's capacity mid-run, and the factor on sync_work_ms of each:
# `capacity` halves the capacity, `capacity-up` doubles it.
WORK_FACTORS = {"capacity": WORK_FACTOR, "capacity-up": 1 / WORK_FACTOR}
SETTLE_S = 3.0
CAPACITY_MARGIN_S = 6.0
MIN_CAPACITY_DURATION_S = CAPACITY_CHANGE_S + 2 * CAPACITY_MARGIN_S

class ConfigError(ValueError):
    """A bad option: the message is the one line the user sees."""

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"{option}: {problem}")
        self.option = option


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
    mix: tuple[tuple[str, int], ...] = ()
    service: ServiceOptions | None = None  # the request, guard rails and gates (comparison/own_service.py)
    metastable: MetastableOptions | None = None  # phases and trigger (comparison/metastable.py)

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ConfigError("--scenario", f"{self.scenario!r} is not one of {', '.join(SCENARIOS)}")
        if not self.clients:
            raise ConfigError("--clients", "name at least one client class, e.g. HammerClient,BreakerClient")
        duplicates = sorted({c for c in self.clients if self.clients.count(c) > 1})
        if duplicates:
            raise ConfigError("--clients", f"{duplicates[0]} is named twice")
        for name in self.clients:
            if not (name.isascii() and name.isidentifier()):
                raise ConfigError("--clients", f"{name!r} is not a class name")
        _check_range("--duration", self.duration_s, MIN_DURATION_S, MAX_DURATION_S, "seconds")
        if self.scenario == "outage" and self.duration_s < MIN_OUTAGE_DURATION_S:
            raise ConfigError(
                "--duration",
                f"{_num(self.duration_s)} s is too short for the outage scenario: it needs at least "
                f"{_num(MIN_OUTAGE_DURATION_S)} s (5 s before, the 10 s outage, 5 s after)",
            )
        if self.scenario in WORK_FACTORS and self.duration_s < MIN_CAPACITY_DURATION_S:
            raise ConfigError(
                "--duration",
                f"{_num(self.duration_s)} s is too short for the {self.scenario} scenario: it needs at least "
                f"{_num(MIN_CAPACITY_DURATION_S)} s ({_num(CAPACITY_MARGIN_S)} s before, the "
                f"{_num(CAPACITY_CHANGE_S)} s change, {_num(CAPACITY_MARGIN_S)} s after)",
            )
        if self.scenario == "burst" and self.duration_s < BURST_QUIET_S + BURST_PEAK_S:
            raise ConfigError(
                "--duration",
                f"{_num(self.duration_s)} s is too short for the burst scenario: one cycle takes "
                f"{_num(BURST_QUIET_S + BURST_PEAK_S)} s",
            )
        if self.capacity is not None:
            _check_range("--capacity", self.capacity, 1, MAX_RATE, "requests/s")
        if self.rate_multiplier is not None:
            _check_range("--rate-multiplier", self.rate_multiplier, 0.05, 20, "x capacity")
        if self.launch_rate is not None:
            _check_range("--launch-rate", self.launch_rate, 1, MAX_RATE, "requests/s")
        if self.rate_multiplier is not None and self.launch_rate is not None:
            raise ConfigError("--launch-rate", "give either --launch-rate or --rate-multiplier, not both")
        if self.host is not None and (problem := host_problem(self.host)):
            raise ConfigError("--host", f"{_shown(self.host)} {problem}")
        _check_range("--probe-seconds", self.probe_s, 1, 30, "seconds")
        _check_range("--slo-ms", self.slo_ms, 1, MAX_SLO_MS, "milliseconds")
        _check_range("--drain-s", self.drain_s, 0, MAX_DRAIN_S, "seconds")
        if type(self.workers) is not int or not 1 <= self.workers <= MAX_WORKERS:
            raise ConfigError(
                "--workers", f"must be a whole number from 1 to {MAX_WORKERS}, got {self.workers!r}"
            )
        if type(self.target_workers) is not int or not 1 <= self.target_workers <= MAX_WORKERS:
            raise ConfigError(
                "--target-workers",
                f"must be a whole number from 1 to {MAX_WORKERS}, got {self.target_workers!r}",
            )
        if self.scenario == "fleet" and self.workers < 2:
            raise ConfigError("--workers", "the fleet scenario needs at least 2 client instances")
        if self.mix:
            if self.scenario == "burst":
                raise ConfigError("--mix", "not with the burst scenario, whose load shape sets the users")
            if tuple(name for name, _ in self.mix) != self.clients:
                raise ConfigError("--mix", "names the classes of the run; leave out --clients")
        if self.target_workers > 1 and self.host is not None:
            raise ConfigError("--target-workers", "starts the embedded target; leave out --host to use it")
        reserved = reserved_options(self.passthrough)
        if reserved:
            named = ", ".join(t if t == o else f"{t!r} ({o})" for t, o in reserved)
            raise ConfigError(
                "after --",
                f"{named}: set by the runner for every class; use the runner's own options instead",
            )
        for value in paths_given(self.passthrough):
            if problem := path_problem(value):
                raise ConfigError("--path", f"{_shown(value)} {problem}")


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


def _check_range(option: str, value: float, low: float, high: float, unit: str) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value) or not low <= value <= high:
        got = _num(value) if isinstance(value, int | float) else repr(value)
        raise ConfigError(option, f"must be from {_num(low)} to {_num(high)} {unit}, got {got}")


def _num(value: float) -> str:
    return f"{value:g}"


def _shown(text: str, limit: int = 80) -> str:
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 2] + "…'"


@dataclass(frozen=True)
class BurstPlan:
    """The burst cycle: one user while quiet, `peak_users` during each peak, quiet phase first."""

    quiet_users: int
    peak_users: int
    quiet_s: float
    peak_s: float

    def users_at(self, t: float) -> int:
        return self.peak_users if t % (self.quiet_s + self.peak_s) >= self.quiet_s else self.quiet_users

    def peaks(self, duration_s: float) -> list[tuple[float, float]]:
        """The (start, end) of every peak inside the run, in seconds since the test started."""
        spans, start = [], self.quiet_s
        while start < duration_s:
            spans.append((start, min(duration_s, start + self.peak_s)))
            start += self.quiet_s + self.peak_s
        return spans

    def to_env(self, duration_s: float) -> str:
        return (
            f"quiet_users={self.quiet_users},peak_users={self.peak_users},quiet_s={self.quiet_s:g},"
            f"peak_s={self.peak_s:g},duration_s={duration_s:g}"
        )


@dataclass(frozen=True)
class LoadPlan:
    """What every class is offered. `offered_rps` is the mean over the run (the burst averages).
    In the capacity scenario `reduced_capacity_rps` is C while sync_work_ms is multiplied by
    WORK_FACTOR, from `capacity_change_at_s` for `capacity_change_s` seconds."""

    scenario: str
    capacity_rps: float
    duration_s: float
    users: int
    launch_rate: float
    offered_rps: float
    burst: BurstPlan | None = None
    outage_at_s: float | None = None
    outage_s: float | None = None
    capacity_change_at_s: float | None = None
    capacity_change_s: float | None = None
    reduced_capacity_rps: float | None = None
    slo_ms: float = DEFAULT_SLO_MS
    drain_s: float = DEFAULT_DRAIN_S
    workers: int = 1
    mix: tuple[tuple[str, int], ...] = ()  # (class, users per client instance), from --mix

    def __post_init__(self) -> None:
        if self.users < 1 or self.launch_rate <= 0 or self.capacity_rps <= 0:
            raise ValueError(f"impossible load plan: {self}")
        if self.reduced_capacity_rps is not None and self.reduced_capacity_rps <= 0:
            raise ValueError(f"impossible load plan: {self}")

    def with_trigger(self, at_s: float, trigger_s: float) -> LoadPlan:
        """The metastable scenario's plan: its trigger is the mid-run capacity change (none for 0 s)."""
        trigger = trigger_s or None
        return replace(self, capacity_change_at_s=at_s if trigger else None, capacity_change_s=trigger)

    @property
    def event_at_s(self) -> float | None:
        """When the runner changes the server mid-run (outage or capacity change), if it does."""
        return self.outage_at_s if self.outage_s else self.capacity_change_at_s

    def offered_at(self, t: float) -> float:
        """Offered requests/s at `t` seconds into the test."""
        if self.burst is not None:
            return self.burst.users_at(t) * self.launch_rate
        return self.users * self.launch_rate

    @classmethod
    def build(
        cls, config: RunConfig, capacity_rps: float, reduced_capacity_rps: float | None = None
    ) -> LoadPlan:
        plan = cls._shape(config, capacity_rps, reduced_capacity_rps)
        plan = replace(plan, slo_ms=config.slo_ms, drain_s=config.drain_s).split(config.workers)
        return plan.mixed(config.mix)

    def mixed(self, mix: tuple[tuple[str, int], ...]) -> LoadPlan:
        """Several classes in one run: the same offered load over `sum(users)` users per instance, each
        launching the same rate, so a class's share of the load is its share of the users."""
        if not mix:
            return self
        total = sum(users for _, users in mix)
        return replace(self, users=self.users * total, launch_rate=self.launch_rate / total, mix=mix)

    def offered_share(self, client: str) -> float:
        """The share of the offered load that `client` launches (1 without a mix)."""
        if not self.mix:
            return 1.0
        users = dict(self.mix)
        return users.get(client, 0) / sum(users.values())

    def mix_spec(self) -> str:
        """The Locust `--mix` value: every instance gets each class's users, so the master dispatches
        `users x workers` of each."""
        return ",".join(f"{name}:{users * self.workers}" for name, users in self.mix)

    def split(self, workers: int) -> LoadPlan:
        """The same offered load over `workers` Locust workers (client instances): every user count times
        `workers`, so each worker gets as many users as one process would, and each user's launch rate
        divided by `workers`. The total offered rate, and its shape over time, do not change."""
        if workers == 1:
            return self
        burst = self.burst
        if burst is not None:
            burst = replace(
                burst, quiet_users=burst.quiet_users * workers, peak_users=burst.peak_users * workers
            )
        return replace(
            self,
            users=self.users * workers,
            launch_rate=self.launch_rate / workers,
            burst=burst,
            workers=workers,
        )

    @classmethod
    def _shape(
        cls, config: RunConfig, capacity_rps: float, reduced_capacity_rps: float | None
    ) -> LoadPlan:
        multiplier = config.rate_multiplier or DEFAULT_MULTIPLIER[config.scenario]
        rate = config.launch_rate or multiplier * capacity_rps
        duration = config.duration_s
        if config.scenario == "burst":
            burst = BurstPlan(1, BURST_PEAK_USERS, BURST_QUIET_S, BURST_PEAK_S)
            per_user = rate / BURST_PEAK_USERS
            peak_time = sum(end - start for start, end in burst.peaks(duration))
            mean = per_user * (peak_time * burst.peak_users + (duration - peak_time) * burst.quiet_users)
            return cls("burst", capacity_rps, duration, 1, per_user, mean / duration, burst=burst)
        if config.scenario in WORK_FACTORS:
            if reduced_capacity_rps is None:
                raise ValueError("the capacity scenario needs the reduced capacity")
            return cls(
                config.scenario, capacity_rps, duration, 1, rate, rate,
                capacity_change_at_s=round((duration - CAPACITY_CHANGE_S) / 2, 1),
                capacity_change_s=CAPACITY_CHANGE_S,
                reduced_capacity_rps=reduced_capacity_rps,
            )  # fmt: skip
        outage_at = outage_s = None
        if config.scenario == "outage":
            outage_s = OUTAGE_S
            outage_at = round((duration - OUTAGE_S) / 2, 1)
        return cls(config.scenario, capacity_rps, duration, 1, rate, rate, None, outage_at, outage_s)
