"""What every Locust process is offered: a frozen load plan built from a scenario and the measured C.

The plan is the bottom of comparison/: the config, the scenarios, the summary and the charts read it, and
it imports none of them. A scenario builds its plan (comparison/scenarios/); the runner hands it to Locust.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

DEFAULT_SLO_MS = 1000.0
DEFAULT_DRAIN_S = 10.0


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
    its work factor, from `capacity_change_at_s` for `capacity_change_s` seconds."""

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
    # A rate schedule: (from t seconds, users) steps, the first from 0, each user launching `launch_rate`;
    # Locust follows it with comparison/schedule_shape.py. Empty: `users` for the whole run.
    schedule: tuple[tuple[float, int], ...] = ()

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
        if self.schedule:
            return self.users_at(t) * self.launch_rate
        return self.users * self.launch_rate

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

    def users_at(self, t: float) -> int:
        """The users of the schedule's step that `t` falls in (`users` without a schedule)."""
        users = self.users
        for start, count in self.schedule:
            if start > t:
                break
            users = count
        return users

    def schedule_env(self) -> str:
        """HAMMERLAB_SCHEDULE for comparison/schedule_shape.py: `duration_s=30;0=2,1.5=3,...`."""
        steps = ",".join(f"{start:g}={users}" for start, users in self.schedule)
        return f"duration_s={self.duration_s:g};{steps}"

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
            schedule=tuple((start, users * workers) for start, users in self.schedule),
        )
