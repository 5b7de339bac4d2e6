"""The scenarios, one module each: the registry that the runner, the config, the command line, the report
and the narrative loop over. Every module in this package except `base` is a scenario and is found
here by itself, so adding one is one new module (plus its docs and tests): docs/adding-a-scenario.md.

Each module has `SCENARIO`, an instance of `base.Scenario`; `order` sets its place in --scenario's help.
"""

from __future__ import annotations

import pkgutil
from importlib import import_module

from comparison.scenarios.base import Scenario


def _load() -> dict[str, Scenario]:
    found: list[Scenario] = []
    for module in pkgutil.iter_modules(__path__):
        if module.name != "base":
            found.append(import_module(f"{__name__}.{module.name}").SCENARIO)
    names = [scenario.name for scenario in found]
    if len(set(names)) != len(names) or "" in names:
        raise RuntimeError(f"comparison/scenarios: every scenario needs a name of its own, got {names}")
    return {scenario.name: scenario for scenario in sorted(found, key=lambda s: (s.order, s.name))}


REGISTRY: dict[str, Scenario] = _load()
DEFAULT = next(name for name, scenario in REGISTRY.items() if scenario.default)


def scenario_of(name: str) -> Scenario:
    """The scenario called `name` (RunConfig has checked that it is one)."""
    return REGISTRY[name]
