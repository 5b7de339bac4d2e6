"""Validation for config value objects: one readable line naming the value and what is allowed.

Configs are frozen dataclasses that call these from `__post_init__`, so a bad value fails where the
object is built (at the start of a run), never deep inside a request.
"""

from __future__ import annotations

import math
from collections.abc import Collection


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_int(owner: str, name: str, value: object, *, minimum: int) -> None:
    """An integer >= minimum (bools are not integers here)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{owner}.{name} must be an integer >= {minimum}, got {value!r}")


def check_seconds(owner: str, name: str, value: object, *, allow_none: bool = False) -> None:
    """A finite number of seconds > 0, or None when allowed (None meaning 'no limit')."""
    if value is None and allow_none:
        return
    if not _is_number(value) or not math.isfinite(value) or value <= 0:  # type: ignore[arg-type]
        allowed = "a number of seconds > 0" + (" or None" if allow_none else "")
        raise ValueError(f"{owner}.{name} must be {allowed}, got {value!r}")


def check_percent(owner: str, name: str, value: object) -> None:
    """A percentage in (0, 100]."""
    if not _is_number(value) or not 0 < value <= 100:  # type: ignore[operator]
        raise ValueError(f"{owner}.{name} must be a percentage in (0, 100], got {value!r}")


def check_choice(owner: str, name: str, value: object, choices: Collection[str]) -> None:
    """One of a few fixed words."""
    if value not in choices:
        raise ValueError(f"{owner}.{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def check_share(owner: str, name: str, value: object) -> None:
    """A share from 0 to 1, both included."""
    if not _is_number(value) or not 0 <= value <= 1:  # type: ignore[operator]
        raise ValueError(f"{owner}.{name} must be a number from 0 to 1, got {value!r}")
