"""The one-line refusal of a bad option, shared by the run's options and every scenario's own.

It sits below everything else in comparison/ so a scenario can check its options without importing the
config that lists the scenarios.
"""

from __future__ import annotations

import math


class ConfigError(ValueError):
    """A bad option: the message is the one line the user sees."""

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"{option}: {problem}")
        self.option = option


def check_range(option: str, value: float, low: float, high: float, unit: str) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value) or not low <= value <= high:
        got = num(value) if isinstance(value, int | float) else repr(value)
        raise ConfigError(option, f"must be from {num(low)} to {num(high)} {unit}, got {got}")


def num(value: float) -> str:
    return f"{value:g}"


def shown(text: str, limit: int = 80) -> str:
    quoted = repr(text)
    return quoted if len(quoted) <= limit else quoted[: limit - 2] + "…'"
