"""Criticality: every call is `critical` or `sheddable`, and under overload the sheddable go first.

The contract, on the wire and in the client (docs/criticality.md):

- A call carries its criticality in the request header `Hammerlab-Criticality: critical|sheddable`.
  The name has no `X-` prefix (RFC 6648 deprecates it) and is namespaced, so it cannot collide with a
  header of the user's own service. A call without it is critical, on both sides: the safe default, as
  in Google's RPC criticality (an unlabelled request is never the one thrown away first). An unknown
  value is critical too.
- The target keeps its own copy of the name and the two values (it must not import the client
  library); a test pins the two together.
- `--criticality-mix critical=0.3` makes 30 % of a class's calls critical and the rest sheddable. Off
  (the default), no header is sent at all, so requests stay byte-identical to a run without it.

On the client the throttle's and the adaptive limit's shared gate (`mitigations.admission`) keeps a
part of its limit for critical calls: `reserved_slots(limit, share)`. It is Netflix concurrency-limits'
partitioned limiter with borrowing one way only: the critical partition is the critical share of the
limit, sheddable calls may never use it, critical calls may use any free slot; queued critical calls
are served before queued sheddable ones (failsafe-go's prioritised adaptive limiter).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mitigations._checks import check_share

HEADER = "Hammerlab-Criticality"
CRITICAL = "critical"
SHEDDABLE = "sheddable"
CRITICALITIES = (CRITICAL, SHEDDABLE)


def criticality_of(headers: Mapping[str, str]) -> str:
    """`sheddable` only when the header says exactly that (any case); anything else is critical."""
    lowered = HEADER.lower()
    for name, value in headers.items():
        if name.lower() == lowered:
            return SHEDDABLE if value.strip().lower() == SHEDDABLE else CRITICAL
    return CRITICAL


def has_criticality(headers: Mapping[str, str]) -> bool:
    lowered = HEADER.lower()
    return any(name.lower() == lowered for name in headers)


def reserved_slots(limit: int, share: float) -> int:
    """Slots of `limit` only critical calls may take: the critical share of it, rounded half up."""
    return min(limit, int(limit * share + 0.5))


@dataclass(frozen=True)
class CriticalityMix:
    """`critical_share` of a class's calls are critical (0 to 1); the rest are sheddable."""

    critical_share: float

    def __post_init__(self) -> None:
        check_share("CriticalityMix", "critical_share", self.critical_share)

    def of(self, index: int) -> str:
        """The criticality of a class's call number `index` (0, 1, ...): deterministic, and exactly the
        share over any run of calls (Bresenham's rule: call n is critical when floor((n+1)s) > floor(ns))."""
        share = self.critical_share
        return CRITICAL if int((index + 1) * share + 1e-9) > int(index * share + 1e-9) else SHEDDABLE


class CriticalityStamper:
    """Labels a class's calls in launch order, one counter per client class per process. A call that
    already carries the header (a user's own `make_call` chose) keeps it."""

    def __init__(self, mix: CriticalityMix) -> None:
        self.mix = mix
        self.count = 0

    def stamp(self, headers: dict[str, str]) -> None:
        if has_criticality(headers):
            return
        headers[HEADER] = self.mix.of(self.count)
        self.count += 1
