"""`capacity-up`: 1.1 x C while the server's sync_work_ms halves for 20 s mid-run, then reverts: the
capacity scenario (comparison/scenarios/capacity.py) the other way, so a limit must grow and come back."""

from __future__ import annotations

from comparison.scenarios.capacity import WORK_FACTOR, CapacityChange


class CapacityUp(CapacityChange):
    name = "capacity-up"
    order = 60
    help = "1.1 x C while the server's sync_work_ms halves for 20 s mid-run, then reverts"
    fault = "doubles the capacity through /admin/config"
    work_factor = 1 / WORK_FACTOR
    verb = "halved"


SCENARIO = CapacityUp()
