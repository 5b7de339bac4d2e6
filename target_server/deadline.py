"""Deadline propagation: the time a client will still wait, read from `X-Request-Deadline-Ms`.

After gRPC's `grpc-timeout` and Envoy's `x-envoy-expected-rq-timeout-ms`, the client sends the time it
has left as a relative number of milliseconds, and the server counts it from the moment the request
reached the app (network and accept-queue time are not subtracted, as with grpc-timeout). A relative
value needs no synchronised clocks; its cost is that time spent before the app saw the request is
invisible, which is why the check before the CPU-bound part matters more than the one on arrival.

`--drop-expired` makes the target check it on arrival and again just before the CPU-bound part of each
task: work whose deadline has passed is answered with a fast 504 (`EXPIRED_HEADER` set, so a client can
tell it from a gateway's 504) instead of being done. With or without the flag, the target uses the
deadline to count wasted work: CPU spent on a request whose deadline had passed when the work finished.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

DEADLINE_HEADER = "X-Request-Deadline-Ms"
DEADLINE_ENVIRON = "HTTP_X_REQUEST_DEADLINE_MS"
EXPIRED_HEADER = "X-Deadline-Expired"  # on the 504 of a dropped request: "1"
MAX_DEADLINE_MS = 86_400_000  # one day; a longer value is refused rather than silently capped
MAX_DIGITS = 9


class DeadlineError(ValueError):
    """A header value that is not a whole number of milliseconds from 0 to MAX_DEADLINE_MS."""


@dataclass(frozen=True)
class Deadline:
    """An absolute deadline on `clock` (time.monotonic by default)."""

    at: float
    clock: Callable[[], float] = time.monotonic

    def remaining_s(self) -> float:
        return self.at - self.clock()

    def expired(self) -> bool:
        return self.clock() >= self.at


def parse_deadline_ms(text: str) -> int:
    """`"850"` -> 850. ASCII digits only (no sign, point, `_` or Unicode digits). Raises DeadlineError."""
    value = text.strip(" \t")
    if not value or len(value) > MAX_DIGITS or not (value.isascii() and value.isdigit()):
        shown = repr(value[:20] + ("…" if len(value) > 20 else ""))
        raise DeadlineError(
            f"{DEADLINE_HEADER}: must be a whole number of milliseconds from 0 to {MAX_DEADLINE_MS}, "
            f"got {shown}"
        )
    number = int(value)
    if number > MAX_DEADLINE_MS:
        raise DeadlineError(
            f"{DEADLINE_HEADER}: must be a whole number of milliseconds from 0 to {MAX_DEADLINE_MS}, "
            f"got {number}"
        )
    return number


def deadline_from(environ: dict[str, object], clock: Callable[[], float] = time.monotonic) -> Deadline | None:
    """The request's deadline, counted from now, or None when it sent none. Raises DeadlineError."""
    raw = environ.get(DEADLINE_ENVIRON)
    if raw is None:
        return None
    return Deadline(clock() + parse_deadline_ms(str(raw)) / 1000, clock)
