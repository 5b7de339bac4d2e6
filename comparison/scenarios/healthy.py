"""`healthy`: 0.8 x C, the seed's healthy pair. Every client should serve it all."""

from __future__ import annotations

from comparison.scenarios.base import Scenario


class Healthy(Scenario):
    name = "healthy"
    order = 10
    help = "0.8 x C, the seed's healthy pair"
    multiplier = 0.8
    plain = True


SCENARIO = Healthy()
