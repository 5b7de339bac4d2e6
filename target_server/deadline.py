"""Deadline propagation: the time a client will still wait, read from `X-Request-Deadline-Ms`.

After gRPC's `grpc-timeout` and Envoy's `x-envoy-expected-rq-timeout-ms`, the client sends the time it
has left as a relative number of milliseconds, and the server counts it from the moment the request
reached the app. A relative value needs no synchronised clocks; its cost is that time the request spent
before the app saw it is invisible, and an overloaded server keeps requests for a long time in the
kernel's accept queue. So the target subtracts what the kernel knows: TCP_INFO's `tcpi_last_data_recv`,
the milliseconds since the request's bytes arrived on the connection (`kernel_wait_s`).

`--drop-expired` makes the target check it on arrival and again just before the CPU-bound part of each
task: work whose deadline has passed is answered with a fast 504 (`EXPIRED_HEADER` set, so a client can
tell it from a gateway's 504) instead of being done. With or without the flag, the target uses the
deadline to count wasted work: CPU spent on a request whose deadline had passed when the work finished.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

DEADLINE_HEADER = "X-Request-Deadline-Ms"
DEADLINE_ENVIRON = "HTTP_X_REQUEST_DEADLINE_MS"
EXPIRED_HEADER = "X-Deadline-Expired"  # on the 504 of a dropped request: "1"
MAX_DEADLINE_MS = 86_400_000  # one day; a longer value is refused rather than silently capped
MAX_DIGITS = 9
# struct tcp_info (linux/tcp.h): 8 one-byte fields, then u32s; tcpi_last_data_recv is the 12th u32.
TCP_INFO_SIZE = 104
LAST_DATA_RECV_OFFSET = 52


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


def kernel_wait_s(sock: socket.socket | None) -> float:
    """Seconds since the last data arrived on `sock` (TCP_INFO's tcpi_last_data_recv): for a request
    just read, how long it waited in the kernel (accept queue, receive buffer) before the app saw it.
    0 where the kernel cannot say (not Linux, not TCP)."""
    if sock is None or not hasattr(socket, "TCP_INFO"):
        return 0.0
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_SIZE)
    except OSError:
        return 0.0
    if len(info) < LAST_DATA_RECV_OFFSET + 4:
        return 0.0
    return struct.unpack_from("I", info, LAST_DATA_RECV_OFFSET)[0] / 1000


def deadline_from(
    environ: dict[str, object], clock: Callable[[], float] = time.monotonic, waited_s: float = 0.0
) -> Deadline | None:
    """The request's deadline, counted from when its bytes arrived (`waited_s` ago), or None when it
    sent none. Raises DeadlineError."""
    raw = environ.get(DEADLINE_ENVIRON)
    if raw is None:
        return None
    return Deadline(clock() - waited_s + parse_deadline_ms(str(raw)) / 1000, clock)
