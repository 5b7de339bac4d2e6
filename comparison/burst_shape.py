"""The burst scenario's load shape: quiet, then a peak, repeating. Loaded by Locust as an extra `-f`.

It lives outside `locustfiles/` on purpose: Locust picks up a LoadTestShape from any file it loads, and
`locust -f locustfiles` loads every file under that folder, so a shape there would take over every run.
The comparison runner passes it only for `--scenario burst`, configured through HAMMERLAB_BURST, e.g.
`quiet_users=1,peak_users=6,quiet_s=7,peak_s=3,duration_s=30` (also the default when it is unset, so
`locust -f locustfiles,comparison/burst_shape.py HammerClient` works by hand). Each user launches the
same rate, so the offered load steps between quiet_users x and peak_users x that rate.

Locust imports this file as a top-level module with its folder on sys.path, so it imports nothing from
the comparison package.
"""

from __future__ import annotations

import os

from locust import LoadTestShape

ENV = "HAMMERLAB_BURST"
DEFAULT = "quiet_users=1,peak_users=6,quiet_s=7,peak_s=3,duration_s=30"
KEYS = ("quiet_users", "peak_users", "quiet_s", "peak_s", "duration_s")
SPAWN_RATE = 100.0  # users per second: a step of 5 users takes 50 ms (Locust warns above 100)


def parse(text: str) -> dict[str, float]:
    """Read HAMMERLAB_BURST; raise ValueError with one line when it is missing or wrong."""
    values: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, _, raw = item.partition("=")
        if key not in KEYS:
            raise ValueError(f"{ENV}: unknown key {key!r}; keys are {', '.join(KEYS)}")
        values[key] = float(raw)
    missing = [key for key in KEYS if key not in values]
    if missing:
        raise ValueError(f"{ENV} needs {', '.join(missing)}, e.g. {','.join(k + '=1' for k in KEYS)}")
    if values["quiet_users"] < 1 or values["peak_users"] < values["quiet_users"]:
        raise ValueError(f"{ENV}: need 1 <= quiet_users <= peak_users")
    if min(values["quiet_s"], values["peak_s"], values["duration_s"]) <= 0:
        raise ValueError(f"{ENV}: quiet_s, peak_s and duration_s must be > 0")
    return values


class BurstShape(LoadTestShape):
    """quiet_users for quiet_s, peak_users for peak_s, again and again, until duration_s."""

    def __init__(self) -> None:
        super().__init__()
        try:
            self.spec = parse(os.environ.get(ENV) or DEFAULT)
        except ValueError as error:
            raise SystemExit(f"burst_shape: error: {error}") from None

    def tick(self) -> tuple[int, float] | None:
        t = self.get_run_time()
        spec = self.spec
        if t >= spec["duration_s"]:
            return None
        peak = t % (spec["quiet_s"] + spec["peak_s"]) >= spec["quiet_s"]
        return int(spec["peak_users" if peak else "quiet_users"]), SPAWN_RATE
