"""`burst`: cycles of 7 s quiet at 0.5 x C and 3 s peaks at 3 x C.

The peak is `PEAK_USERS` users and the quiet phase one user, each launching peak/PEAK_USERS per second,
so the default 3 x C peak has a 0.5 x C floor. Locust steps the users with comparison/burst_shape.py
(the plan's `burst`); report.html shades each peak.
"""

from __future__ import annotations

from typing import Any

from comparison.errors import ConfigError, num
from comparison.plan import BurstPlan, LoadPlan
from comparison.scenarios.base import RunSettings, Scenario

QUIET_S = 7.0
PEAK_S = 3.0
PEAK_USERS = 6


class Burst(Scenario):
    name = "burst"
    order = 30
    help = "cycles of 7 s quiet at 0.5 x C and 3 s peaks at 3 x C"
    multiplier = 3.0
    plain = True

    def check(self, config: RunSettings) -> None:
        if config.duration_s < QUIET_S + PEAK_S:
            raise ConfigError(
                "--duration",
                f"{num(config.duration_s)} s is too short for the {self.name} scenario: one cycle takes "
                f"{num(QUIET_S + PEAK_S)} s",
            )
        if config.mix:
            raise ConfigError("--mix", f"not with the {self.name} scenario, whose load shape sets the users")

    def shape(self, config: RunSettings, capacity_rps: float, reduced_rps: float | None) -> LoadPlan:
        rate = config.launch_rate or (config.rate_multiplier or self.multiplier) * capacity_rps
        duration = config.duration_s
        burst = BurstPlan(1, PEAK_USERS, QUIET_S, PEAK_S)
        per_user = rate / PEAK_USERS
        peak_time = sum(end - start for start, end in burst.peaks(duration))
        mean = per_user * (peak_time * burst.peak_users + (duration - peak_time) * burst.quiet_users)
        return LoadPlan(self.name, capacity_rps, duration, 1, per_user, mean / duration, burst=burst)

    def shape_words(self, plan: LoadPlan, ratio: float) -> str:
        return f"in bursts averaging {plan.offered_rps:,.0f} requests/s ({ratio:.2f} x)"

    def shade(self, axes: Any, plan: LoadPlan) -> None:
        if plan.burst is not None:
            for start, end in plan.burst.peaks(plan.duration_s):
                axes.axvspan(start, end, color="#fff3e0", alpha=0.8, lw=0, zorder=0)


SCENARIO = Burst()
