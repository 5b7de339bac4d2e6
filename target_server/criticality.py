"""Request criticality: which /doWork requests a busy server refuses first (`--priority-shedding`).

Google's RPC criticality (SRE book, "Handling Overload") lets every request say how much it matters, and
a backend past its limit rejects the least critical first; a request that says nothing is CRITICAL.
Netflix's prioritized load shedding kept user-initiated requests above 99.4 % available while prefetch
traffic fell to 20 %. Here there are two classes, sent by the client in one request header:

    Hammerlab-Criticality: critical | sheddable

No header means critical: a client that knows nothing of criticality loses nothing. Any other value is a
400 naming it (a typo silently read as critical would hide the very thing a run is meant to show).

The shedding rule is toobusy's curve (`busy.shed_probability`) with one max lag per class: critical
requests keep `max_lag_ms`, sheddable ones use `sheddable_lag_ms` (by default half of it). So at every
lag a sheddable request is at least as likely to be refused as a critical one, and with the default every
sheddable request is refused (2 x sheddable_lag_ms = max_lag_ms) by the time the first critical one may be.

The target keeps its own copy of the header name and values: it must not import the client library
(`mitigations/`); tests/test_criticality_target.py pins the two copies together.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from target_server.busy import shed_probability
from target_server.guard import InputError

HEADER = "Hammerlab-Criticality"
ENVIRON_KEY = "HTTP_" + HEADER.upper().replace("-", "_")  # how WSGI presents it
CRITICAL = "critical"
SHEDDABLE = "sheddable"
LEVELS = (CRITICAL, SHEDDABLE)
DEFAULT = CRITICAL  # no header: critical, as in Google's RPC criticality
MAX_SHOWN = 40  # characters of a bad value quoted back


def criticality_of(environ: Mapping[str, Any]) -> str:
    """The request's criticality; no header is critical. Raises InputError (a 400) for any other value.
    Case-insensitive; a repeated header arrives joined (`critical, sheddable`) and is refused."""
    raw = environ.get(ENVIRON_KEY)
    if raw is None:
        return DEFAULT
    value = str(raw).strip().lower()
    if value in LEVELS:
        return value
    shown = str(raw)[:MAX_SHOWN] + ("..." if len(str(raw)) > MAX_SHOWN else "")
    raise InputError(f"{HEADER}: must be {' or '.join(LEVELS)} (no header: {DEFAULT}), got {shown!r}")


def sheddable_lag(max_lag_ms: float, sheddable_lag_ms: float | None) -> float:
    """The lag above which sheddable requests may be shed: the option, or half of max_lag_ms."""
    return max_lag_ms / 2 if sheddable_lag_ms is None else sheddable_lag_ms


def shed_chance(
    criticality: str, lag_ms: float, max_lag_ms: float, sheddable_lag_ms: float | None, priority: bool
) -> float:
    """The chance a request of this criticality is shed at `lag_ms`. Without priority shedding every
    request uses max_lag_ms (plain toobusy), whatever its header says."""
    if priority and criticality == SHEDDABLE:
        return shed_probability(lag_ms, sheddable_lag(max_lag_ms, sheddable_lag_ms))
    return shed_probability(lag_ms, max_lag_ms)
