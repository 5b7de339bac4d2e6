"""The project's one strict syntax for numbers and for JSON: flags, TARGET_* env vars, query strings,
`--fault` specs, /admin bodies and latency profiles here, and (through `locust_plugin/values.py` and the
comparison's parsers) every client option and the web UI's fault control too.

Python's `int()` and `float()` accept `3_000`, full-width and Arabic-Indic digits, `nan`, `inf` and
surrounding Unicode whitespace, so `--port 3000` written in full-width digits used to bind port 3000.
Here a number is ASCII digits with an optional sign, point and exponent, nothing else, and it must be
finite. Python's `json` takes repeated keys (the last wins), NaN/Infinity literals, `1e400` (as inf)
and recursion until the interpreter gives up; `strict_json` refuses each with one line. This module
imports nothing of the project, so every layer may use it without loading the target.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
MAX_CHARS = 40  # no option needs more; int() of a 5,000-digit string is slow and raises anyway
SPACE = " \t"
MAX_JSON_DEPTH = 64  # no body or profile nests more than a few levels


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


class JSONProblem(ValueError):
    """JSON that `strict_json` refuses; the message is one line without a prefix."""


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise JSONProblem(f"key {key!r} is given twice")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise JSONProblem(f"{name} is not a number this project accepts")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JSONProblem(f"{text[:40]} is too large (not a finite number)")
    return value


def _too_deep(text: str | bytes) -> bool:
    """More than MAX_JSON_DEPTH levels of [ and { (strings are skipped), found without recursion."""
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    if data.count(b"[") + data.count(b"{") <= MAX_JSON_DEPTH:
        return False
    depth, quoted, escaped = 0, False, False
    for byte in data:
        if quoted:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                quoted = False
        elif byte == 0x22:
            quoted = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


def strict_json(text: str | bytes) -> Any:
    """JSON with no repeated keys, no NaN/Infinity, only finite numbers, at most MAX_JSON_DEPTH levels.
    Raises JSONProblem with one line (no prefix: the caller names the source)."""
    if _too_deep(text):
        raise JSONProblem(f"nested too deeply (more than {MAX_JSON_DEPTH} levels)")
    try:
        return json.loads(
            text, object_pairs_hook=_no_repeats, parse_constant=_no_constant, parse_float=_finite
        )
    except JSONProblem:
        raise
    except RecursionError:
        raise JSONProblem("nested too deeply") from None
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError, an int of 5,000 digits
        raise JSONProblem(f"not valid JSON ({str(error).splitlines()[0][:120]})") from None
