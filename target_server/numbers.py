"""Strict number syntax for flags, TARGET_* env vars, query strings and `--fault` specs.

Python's `int()` and `float()` accept `3_000`, full-width digits (U+FF10-FF19), `nan`, `inf` and
surrounding Unicode whitespace, so `--port 3000` written in full-width digits used to bind port 3000.
Here a number is ASCII digits with an optional sign, point and exponent, nothing else, and it must be
finite. JSON bodies go through `json`, whose number grammar is already ASCII-only; their NaN/Infinity
literals are refused where bodies are read (guard.py).
"""

from __future__ import annotations

import math
import re

INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
MAX_CHARS = 40  # no option needs more; int() of a 5,000-digit string is slow and raises anyway
SPACE = " \t"


def parse_int(text: str) -> int:
    """An integer written with ASCII digits only. Raises ValueError otherwise."""
    text = text.strip(SPACE)
    if len(text) > MAX_CHARS or not INTEGER.fullmatch(text):
        raise ValueError(text)
    return int(text)


def parse_float(text: str) -> float:
    """A finite decimal number written with ASCII digits only. Raises ValueError otherwise."""
    text = text.strip(SPACE)
    if len(text) > MAX_CHARS or not DECIMAL.fullmatch(text):
        raise ValueError(text)
    value = float(text)
    if not math.isfinite(value):  # 1e999
        raise ValueError(text)
    return value
