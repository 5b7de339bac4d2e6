"""Text to option values, strictly: one readable line for anything a person did not plainly mean.

Python's own `int()` and `float()` accept `3_000`, full-width or Arabic-Indic digits, `nan`, `inf` and
`1e-300`; a lab that exists to overload servers must not turn a typo into a runaway. So every number
here is plain ASCII (`[+-]digits[.digits][e[+-]digits]`, whole numbers without the fraction or exponent),
finite, and inside a documented range (docs/limits.md). Zero is allowed only where it means "off".
The syntax is `target_server/numbers.py`'s, the project's one; `number` is the one ranged factory.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from mitigations import request as _request
from target_server.numbers import DECIMAL, INTEGER, MAX_CHARS

MAX_TEXT = MAX_CHARS  # longer than any number a person types; keeps error lines short


def _text(raw: object) -> str:
    return str(raw).strip(" \t")


def _shown(raw: object) -> str:
    text = repr(_text(raw) if not isinstance(raw, int | float) else raw)
    return text if len(text) <= MAX_TEXT + 2 else text[: MAX_TEXT - 1] + "…'"


def _g(value: float) -> str:
    return f"{value:,g}" if abs(value) < 1e6 else f"{value:,.0f}"


def parse_decimal(raw: object) -> float:
    """A finite decimal number in plain ASCII; raises ValueError with one line."""
    if isinstance(raw, bool):
        raise ValueError(f"{raw!r} is not a number")
    text = _text(raw) if not isinstance(raw, int | float) else repr(raw)
    if len(text) > MAX_TEXT or not DECIMAL.fullmatch(text):
        raise ValueError(f"{_shown(raw)} is not a number (plain digits like 12.5 or 1e3; no _, nan or inf)")
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{_shown(raw)} is too large")
    return value


def parse_whole(raw: object) -> int:
    """A whole number in plain ASCII digits; raises ValueError with one line."""
    if isinstance(raw, bool):
        raise ValueError(f"{raw!r} is not a whole number")
    text = str(raw) if isinstance(raw, int) else _text(raw)
    if len(text) > MAX_TEXT or not INTEGER.fullmatch(text):
        raise ValueError(f"{_shown(raw)} is not a whole number (plain digits; no _, . or e)")
    return int(text)


def _span(low: float, high: float, unit: str) -> str:
    return f"{_g(low)} to {_g(high)}" + (f" {unit}" if unit else "")


def number(
    low: float, high: float, unit: str = "", zero: str | None = None, *, integer: bool = False
) -> Callable[[object], Any]:
    """The one factory of ranged options: a decimal (or, with `integer`, a whole number) in [low, high]
    (low > 0: tiny values like 1e-300 are refused, not rounded to zero), or exactly 0 when `zero` says
    what 0 means. The parser carries `allowed`, `low`, `high` and `zero` for the docs and the web UI."""
    allowed = _span(low, high, unit) + (f", or 0 = {zero}" if zero else "")
    syntax = parse_whole if integer else parse_decimal

    def parse(raw: object) -> Any:
        value = syntax(raw)
        if zero is not None and value == 0:
            return 0 if integer else 0.0
        if not low <= value <= high:
            raise ValueError(f"{_shown(raw)} must be from {allowed}")
        return value

    parse.__name__ = "whole" if integer else "number"
    parse.allowed, parse.low, parse.high = allowed, low, high  # type: ignore[attr-defined]
    parse.zero = zero  # type: ignore[attr-defined]
    return parse


def whole(low: int, high: int, unit: str = "", zero: str | None = None) -> Callable[[object], int]:
    """`number(..., integer=True)`: counts and milliseconds."""
    return number(low, high, unit, zero, integer=True)


def boolean(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    lowered = _text(raw).lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"{_shown(raw)} is not true or false")


boolean.choices = ("true", "false")  # type: ignore[attr-defined]


def choice(*allowed: str) -> Callable[[object], str]:
    def parse(raw: object) -> str:
        value = _text(raw)
        if value not in allowed:
            raise ValueError(f"{_shown(raw)} is not one of {', '.join(allowed)}")
        return value

    parse.__name__ = "choice"
    parse.choices = allowed  # type: ignore[attr-defined]  # `hammerlab options` shows them
    return parse


WINDOW_SECONDS = (0.1, 3600.0)
WINDOW_CALLS = (1, 100_000)


def window(raw: object) -> tuple[str, float]:
    """A breaker window: `10s` is the last 10 seconds, `100` is the last 100 calls."""
    text = _text(raw).lower()
    low_s, high_s = WINDOW_SECONDS
    low_n, high_n = WINDOW_CALLS
    allowed = f"seconds from {_g(low_s)}s to {_g(high_s)}s, or a call count from {low_n} to {high_n:,}"
    try:
        if text.endswith("s"):
            seconds = parse_decimal(text[:-1])
            if low_s <= seconds <= high_s:
                return ("time", seconds)
        else:
            calls = parse_whole(text)
            if low_n <= calls <= high_n:
                return ("count", float(calls))
    except ValueError:
        pass
    raise ValueError(f"{_shown(raw)} is not a window: use {allowed}")


window.allowed = (  # type: ignore[attr-defined]
    f"{_g(WINDOW_SECONDS[0])}s to {_g(WINDOW_SECONDS[1])}s, or {WINDOW_CALLS[0]} to {WINDOW_CALLS[1]:,} calls"
)


def criticality_mix(raw: object) -> tuple[float, ...]:
    """`critical=0.3`: the share of a class's calls that are critical, as `(0.3,)`; `off` (or empty):
    `()`, no labels. A tuple, so argparse and the web UI keep the text (`options._argparse_type`)."""
    text = _text(raw)
    if text.lower() in ("", "off"):
        return ()
    name, sep, value = text.partition("=")
    problem = f"{_shown(raw)} is not critical=SHARE with SHARE from 0 to 1 (e.g. critical=0.3), or off"
    if not sep or name.strip().lower() != "critical":
        raise ValueError(problem)
    try:
        share = parse_decimal(value)
    except ValueError:
        raise ValueError(problem) from None
    if not 0 <= share <= 1:
        raise ValueError(problem)
    return (share,)


criticality_mix.allowed = "critical=0 to critical=1 (the share of critical calls), or off"  # type: ignore[attr-defined]


def path(raw: object) -> str:
    """A request path on the target: `/` first, then printable ASCII; never a scheme, an authority
    (`//host`), user info (`@host`) or a backslash, which would send the request somewhere else
    (`mitigations.request.path_problem`, the rule every request meets, replays included)."""
    text = str(raw)
    problem = _request.path_problem(text)
    if problem:
        raise ValueError(f"{_shown(raw)} {problem}")
    return text


def header(raw: object) -> tuple[str, str]:
    """`'Name: value'`, one request header (mitigations.request: never Host or the framing headers)."""
    return _request.parse_header(raw)


def body(raw: object) -> str:
    """Request body text, at most 1 MiB; empty: no body."""
    return _request.parse_body(raw)


def body_file(raw: object) -> str:
    """A readable file of at most 1 MiB whose bytes are the body; empty: none."""
    return _request.parse_body_file(raw)
