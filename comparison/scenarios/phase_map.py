"""`phase-map`: the metastable run over a grid of offered load x trigger length (docs/metastable.md).

It takes the metastable scenario's options plus --loads and --triggers, and runs itself: one short
metastable run per client, load and trigger length (comparison/phase_map.py), writing phase_map.csv,
phase_map.md and a report.html of heat maps instead of the one-run outputs.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from comparison import phase_map as grid
from comparison.scenarios.base import Number
from comparison.scenarios.metastable import Metastable


class PhaseMap(Metastable):
    name = "phase-map"
    order = 90
    help = "the metastable run over a grid of offered load x trigger length (docs/metastable.md)"
    option_dests = (*Metastable.option_dests, "loads", "triggers")
    clients = grid.DEFAULT_CLIENTS
    option_defaults = grid.MetastableDefaults

    def add_arguments(self, parser: argparse.ArgumentParser, number: Number) -> None:
        grid.add_arguments(parser)  # the metastable options are on the parser already

    def options(self, args: argparse.Namespace) -> Any:
        options = super().options(args)
        loads = grid.parse_list("--loads", args.loads, grid.DEFAULT_LOADS, 0.05, 20)
        triggers = grid.parse_list("--triggers", args.triggers, grid.DEFAULT_TRIGGERS, 0, 300)
        return dataclasses.replace(options, loads=loads, triggers=triggers, trigger_s=max(triggers))

    def run(self, config: Any, out: Any, argv: list[str] | None, runner: Any) -> Any:
        return grid.run_map(config, runner, Metastable.name, out, argv)


SCENARIO = PhaseMap()
