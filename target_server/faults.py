"""Faults for the mitigations to face: what each one is, how it is written, and which are active.

A `Fault` is what someone asked for (`error:rate=0.2,duration_s=30`). An `ActiveFault` is a fault that was
switched on at a wall-clock time, with an id so that it can be switched off again. Wall-clock time (not
monotonic) because several gunicorn workers share the same list through a file.

Faults apply to `/doWork` only: `/ping`, `/stats`, `/metrics` and `/admin` always answer, so a faulty server
can still be observed and healed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from target_server.numbers import parse_float, parse_int

KINDS = ("error", "slow", "reset", "hang", "outage")
TERMINAL_KINDS = ("hang", "reset", "error")
DEFAULT_STATUS = {"error": 500, "outage": 503}
DEFAULT_SLOW_DELAY_MS = 1000.0
MAX_DELAY_MS = 600_000
MAX_DURATION_S = 86_400  # one day, the same cap as /admin/config's duration_s
# Which keys each kind accepts. An outage hits every request, so it has no rate, and it must end.
KEYS = {
    "error": ("rate", "duration_s", "status"),
    "slow": ("rate", "duration_s", "delay_ms"),
    "reset": ("rate", "duration_s"),
    "hang": ("rate", "duration_s"),
    "outage": ("duration_s", "status"),
}


class FaultError(ValueError):
    """A fault that cannot be: unknown kind, unknown key, or a value out of range."""


@dataclass(frozen=True)
class Fault:
    """One fault. `rate` is the share of /doWork requests hit; `duration_s` ends it (None: when removed).

    `delay_ms` (slow) and `status` (error, outage) left as None take their defaults; a value that is given
    is used as given or refused, so `delay_ms=0` never turns silently into 1000 ms.
    """

    kind: str
    rate: float = 1.0
    duration_s: float | None = None
    delay_ms: float | None = None
    status: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise FaultError(f"unknown fault kind {self.kind!r}; allowed: {', '.join(KINDS)}")
        if not _number(self.rate) or not 0 <= self.rate <= 1:
            raise FaultError(f"{self.kind} rate must be a number from 0 to 1, got {self.rate!r}")
        if self.duration_s is not None and (
            not _number(self.duration_s) or not 0 < self.duration_s <= MAX_DURATION_S
        ):
            raise FaultError(
                f"{self.kind} duration_s must be a number > 0 and <= {MAX_DURATION_S}, "
                f"got {self.duration_s!r}"
            )
        if self.kind == "outage":
            if self.duration_s is None:
                raise FaultError(
                    "outage needs duration_s (the server recovers after it), e.g. outage:duration_s=10"
                )
            if self.rate != 1.0:
                raise FaultError("outage hits every request; it takes no rate")
        if self.kind == "slow":
            delay = DEFAULT_SLOW_DELAY_MS if self.delay_ms is None else self.delay_ms
            if not _number(delay) or not 0 < delay <= MAX_DELAY_MS:
                raise FaultError(
                    f"slow delay_ms must be a number > 0 and <= {MAX_DELAY_MS} (leave it out for "
                    f"{DEFAULT_SLOW_DELAY_MS:g}), got {self.delay_ms!r}"
                )
            object.__setattr__(self, "delay_ms", float(delay))
        elif self.delay_ms is not None:
            raise FaultError(f"{self.kind} takes no delay_ms; allowed keys: {', '.join(KEYS[self.kind])}")
        if self.kind in DEFAULT_STATUS:
            status = DEFAULT_STATUS[self.kind] if self.status is None else self.status
            if isinstance(status, bool) or not isinstance(status, int) or not 500 <= status <= 599:
                raise FaultError(
                    f"{self.kind} status must be an integer from 500 to 599, got {self.status!r}"
                )
            object.__setattr__(self, "status", status)
        elif self.status is not None:
            raise FaultError(f"{self.kind} takes no status; allowed keys: {', '.join(KEYS[self.kind])}")
        object.__setattr__(self, "rate", float(self.rate))

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind}
        for key in KEYS[self.kind]:
            data[key] = getattr(self, key)
        return data

    @classmethod
    def from_json(cls, data: Any) -> Fault:
        """Build from an admin body such as {"kind": "slow", "rate": 0.5, "delay_ms": 300}."""
        if not isinstance(data, Mapping):
            raise FaultError('a fault must be a JSON object like {"kind": "error", "rate": 0.5}')
        if "kind" not in data:
            raise FaultError(f"a fault needs a kind; allowed: {', '.join(KINDS)}")
        kind = data.get("kind")
        if kind not in KINDS:
            raise FaultError(f"unknown fault kind {kind!r}; allowed: {', '.join(KINDS)}")
        values = {key: value for key, value in data.items() if key != "kind"}
        for key in values:
            if key not in KEYS[kind]:
                raise FaultError(f"{kind} takes no {key!r}; allowed keys: {', '.join(KEYS[kind])}")
        return cls(kind=kind, **values)


def parse_fault(text: str) -> Fault:
    """Parse the flag form `KIND[:key=value,...]`, e.g. `slow:rate=0.5,delay_ms=300`."""
    kind, _, rest = text.strip().partition(":")
    kind = kind.strip()
    if kind not in KINDS:
        raise FaultError(f"unknown fault kind {kind!r} in {text!r}; allowed: {', '.join(KINDS)}")
    values: dict[str, Any] = {"kind": kind}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, raw = item.partition("=")
        key = key.strip()
        if not eq or key not in KEYS[kind]:
            raise FaultError(f"{kind} takes key=value pairs with keys {', '.join(KEYS[kind])}; got {item!r}")
        if key in values:
            raise FaultError(f"{kind} {key} is given twice in {text.strip()!r}; give each key once")
        try:
            values[key] = parse_int(raw) if key == "status" else parse_float(raw)
        except ValueError:
            raise FaultError(f"{kind} {key} must be a number, got {raw.strip()!r}") from None
    return Fault.from_json(values)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class ActiveFault:
    """A fault switched on at `started_at` (unix seconds)."""

    id: str
    fault: Fault
    started_at: float

    @property
    def expires_at(self) -> float | None:
        return None if self.fault.duration_s is None else self.started_at + self.fault.duration_s

    def active(self, now: float) -> bool:
        return self.expires_at is None or now < self.expires_at

    def remaining_s(self, now: float) -> float | None:
        return None if self.expires_at is None else max(0.0, self.expires_at - now)

    def to_json(self, now: float) -> dict[str, Any]:
        data = {"id": self.id, **self.fault.to_json(), "started_at": round(self.started_at, 3)}
        remaining = self.remaining_s(now)
        data["remaining_s"] = None if remaining is None else round(remaining, 3)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ActiveFault:
        fault = Fault.from_json(
            {k: v for k, v in data.items() if k not in ("id", "started_at", "remaining_s")}
        )
        return cls(id=str(data["id"]), fault=fault, started_at=float(data["started_at"]))


@dataclass(frozen=True)
class Verdict:
    """What the faults decided for one request: an outage, a terminal fault, and/or an extra delay."""

    outage: ActiveFault | None = None
    terminal: ActiveFault | None = None
    delay_ms: float = 0.0
    hit: tuple[str, ...] = ()


HEALTHY = Verdict()


class FaultBook:
    """The active faults of one process. Expired faults drop out when they are looked at."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._faults: list[ActiveFault] = []
        self.next_id = 1

    def add(self, fault: Fault, now: float) -> ActiveFault:
        active = ActiveFault(id=f"f{self.next_id}", fault=fault, started_at=now)
        self.next_id += 1
        self._faults.append(active)
        return active

    def remove(self, fault_id: str) -> bool:
        before = len(self._faults)
        self._faults = [f for f in self._faults if f.id != fault_id]
        return len(self._faults) != before

    def clear(self) -> int:
        count, self._faults = len(self._faults), []
        return count

    def replace_all(self, faults: Iterable[ActiveFault]) -> None:
        """Adopt a list decided elsewhere (another worker, through the shared control file)."""
        self._faults = list(faults)

    def is_active(self, fault_id: str, now: float) -> bool:
        return any(f.id == fault_id and f.active(now) for f in self._faults)

    def active(self, now: float) -> list[ActiveFault]:
        self._faults = [f for f in self._faults if f.active(now)]
        return list(self._faults)

    def current(self, now: float) -> list[ActiveFault]:
        """The active faults, without pruning: safe to call from another thread (status_log)."""
        return [f for f in list(self._faults) if f.active(now)]

    def decide(self, now: float) -> Verdict:
        """Draw every active fault for one request. Cheap when there are none."""
        if not self._faults:
            return HEALTHY
        faults = self.active(now)
        outage = next((f for f in faults if f.fault.kind == "outage"), None)
        if outage is not None:
            return Verdict(outage=outage, hit=("outage",))
        terminal: ActiveFault | None = None
        delay = 0.0
        hit: list[str] = []
        for active in faults:
            fault = active.fault
            if fault.kind == "slow":
                if self._rng.random() < fault.rate:
                    delay += fault.delay_ms
                    hit.append("slow")
            elif terminal is None and self._rng.random() < fault.rate:
                terminal = active
                hit.append(fault.kind)
        return Verdict(terminal=terminal, delay_ms=delay, hit=tuple(hit))
