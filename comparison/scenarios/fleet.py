"""`fleet`: 2 x C in total, split evenly over `--workers N` client instances (default 4).

The per-instance views (fleet.csv, the fleet section) are written for any run with more than one
worker (comparison/fleet.py); this scenario also judges the fleet's three targets.
"""

from __future__ import annotations

from comparison.errors import ConfigError
from comparison.scenarios.base import RunSettings, Scenario

WORKERS = 4  # the default --workers


class Fleet(Scenario):
    name = "fleet"
    order = 70
    help = f"2 x C in total, split evenly over --workers N client instances (default {WORKERS})"
    multiplier = 2.0
    workers = WORKERS
    judges_fleet = True

    def check(self, config: RunSettings) -> None:
        if config.workers < 2:
            raise ConfigError("--workers", f"the {self.name} scenario needs at least 2 client instances")


SCENARIO = Fleet()
