"""`cliff` (the default): 2 x C, the seed's falling over (100/s -> 200/s)."""

from __future__ import annotations

from comparison.scenarios.base import Scenario


class Cliff(Scenario):
    name = "cliff"
    order = 20
    default = True
    help = "2 x C, the seed's falling over (100/s -> 200/s)"
    multiplier = 2.0
    plain = True


SCENARIO = Cliff()
