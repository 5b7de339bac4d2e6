"""A rate schedule for Locust: the users step through `(from t, users)` steps until the run's end.
Loaded by Locust as an extra `-f`, like comparison/burst_shape.py and for the same reason outside
`locustfiles/` (a shape there would take over every run).

Every user launches the same `--launch-rate`, so the offered load at any time is users x that rate: a
scenario that wants load to climb or swing (a ramp, a wave) builds its schedule in its load plan
(`LoadPlan.schedule`), and the runner passes it through HAMMERLAB_SCHEDULE, e.g.
`duration_s=30;0=2,1.5=3,3=4`. Locust imports this file as a top-level module with its folder on
sys.path, so it imports nothing from the comparison package.
"""

from __future__ import annotations

import os
from itertools import pairwise

from locust import LoadTestShape

ENV = "HAMMERLAB_SCHEDULE"
SPAWN_RATE = 100.0  # users per second: a step of 5 users takes 50 ms (Locust warns above 100)
MAX_USERS = 10_000


def parse(text: str) -> tuple[float, list[tuple[float, int]]]:
    """HAMMERLAB_SCHEDULE -> (duration_s, steps); ValueError with one line when it is wrong."""
    head, _, body = text.partition(";")
    key, _, raw = head.partition("=")
    if key.strip() != "duration_s" or not body:
        raise ValueError(f"{ENV}: expected duration_s=SECONDS;T=USERS,..., e.g. duration_s=30;0=2,10=4")
    try:
        duration = float(raw)
        steps = [(float(t), int(users)) for t, _, users in (part.partition("=") for part in body.split(","))]
    except ValueError:
        raise ValueError(f"{ENV}: {text[:80]!r} has a value that is not a number") from None
    if not duration > 0 or steps[0][0] != 0:
        raise ValueError(f"{ENV}: duration_s must be > 0 and the first step must start at 0")
    if any(b[0] <= a[0] for a, b in pairwise(steps)):
        raise ValueError(f"{ENV}: the steps' times must increase")
    if any(not 1 <= users <= MAX_USERS for _, users in steps):
        raise ValueError(f"{ENV}: users must be from 1 to {MAX_USERS}")
    return duration, steps


class ScheduleShape(LoadTestShape):
    """The users of the step the run time falls in, until duration_s."""

    def __init__(self) -> None:
        super().__init__()
        try:
            self.duration_s, self.steps = parse(os.environ.get(ENV, ""))
        except ValueError as error:
            raise SystemExit(f"schedule_shape: error: {error}") from None

    def tick(self) -> tuple[int, float] | None:
        t = self.get_run_time()
        if t >= self.duration_s:
            return None
        users = self.steps[0][1]
        for start, count in self.steps:
            if start > t:
                break
            users = count
        return users, SPAWN_RATE
