"""Timeouts: connect, read and total, the seed's REQUEST_TIMEOUT made explicit (like urllib3's `Timeout`).

- `connect`: seconds to establish a TCP connection (a server whose accept queue is full drops SYNs, so
  without this a connect can hang for the kernel's ~2 minutes: the seed's `connect ETIMEDOUT`).
- `read`: seconds to wait for each read of the response (per socket operation, as urllib3 means it).
- `total`: the whole call's budget, **counted from launch** (`Call.launched_at`, the scheduled time), so
  it covers time spent queued in the client (throttle queue, waiting for a pooled socket) as well as
  the wire. The seed's REQUEST_TIMEOUT also started when the request was issued, before the agent
  found it a socket.

How `total` is used: give it to the pipeline, `Pipeline(..., total_timeout=timeouts.total)`. The
pipeline stamps `call.deadline = launched_at + total` once per logical call, and every part honours that
one absolute deadline: queueing policies stop waiting at it (shedding `QueuedPastDeadline`), and the
transport caps connect and read by the time left (`for_call`) and arms one timer for the rest, failing
with `DeadlineExceeded` when it fires on the wire. A deadline is stamped once, so retries share it.
The pipeline also stamps `send_by`: an attempt goes on the wire only while `min_wire_share` (default
half) of the deadline is left, so a call that used its deadline up in the client's queues is shed
(`deadline`) instead of failing on the wire and being blamed on the server (see `mitigations.core`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mitigations._checks import check_seconds
from mitigations.core import (
    BasePolicy,
    Call,
    ConnectTimeout,
    DeadlineExceeded,
    Next,
    Outcome,
    ReadTimeout,
    ServerFailure,
)

# urllib3 and geventhttpclient reject a timeout of 0, so a spent deadline still yields this floor.
MIN_WIRE_TIMEOUT = 0.001
# Deadline propagation (after gRPC's grpc-timeout and Envoy's x-envoy-expected-rq-timeout-ms): the
# milliseconds this attempt will still wait, sent with every attempt that has a deadline.
DEADLINE_HEADER = "X-Request-Deadline-Ms"
# The target marks the 504 of a request it dropped for its deadline (target_server/deadline.py).
EXPIRED_HEADER = "X-Deadline-Expired"


@dataclass(frozen=True)
class Timeouts:
    """Per-phase limits in seconds; each is None (no limit) or > 0."""

    connect: float | None = None
    read: float | None = None
    total: float | None = None

    def __post_init__(self) -> None:
        for name in ("connect", "read", "total"):
            check_seconds("Timeouts", name, getattr(self, name), allow_none=True)

    def for_call(self, call: Call, now: float) -> tuple[float | None, float | None]:
        """The (connect, read) timeouts to hand the transport now: each configured value, capped by
        the time left before `call.deadline`. Never 0 (see MIN_WIRE_TIMEOUT); None means no limit.
        Check `expired` first: a call with no time left should not be sent at all."""
        remaining = call.remaining(now)
        return _capped(self.connect, remaining), _capped(self.read, remaining)

    @staticmethod
    def expired(call: Call, now: float) -> bool:
        """True when the call has a deadline and it has passed."""
        return call.remaining(now) == 0


def _capped(limit: float | None, remaining: float | None) -> float | None:
    if remaining is None:
        return limit
    remaining = max(remaining, MIN_WIRE_TIMEOUT)
    return remaining if limit is None else min(limit, remaining)


def timeout_failure(call: Call, now: float, phase: str) -> ServerFailure:
    """Name a timeout that fired on the wire: `DeadlineExceeded` if the call's deadline has passed (the
    cap from `for_call` was what fired), else the phase's own `ConnectTimeout` or `ReadTimeout`."""
    if call.remaining(now) == 0:
        return DeadlineExceeded()
    if phase == "connect":
        return ConnectTimeout()
    if phase == "read":
        return ReadTimeout()
    raise ValueError(f"phase must be 'connect' or 'read', got {phase!r}")


def ms_left(remaining: float | None, read: float | None) -> int | None:
    """What `DEADLINE_HEADER` carries: the milliseconds this attempt will still wait, i.e. the seconds the
    call has left before its deadline (`call.remaining(now)`), capped by the read timeout (the target
    sends nothing until it answers, so a read timeout is a deadline on the answer). None when the
    attempt has no deadline."""
    if remaining is None:
        return None
    if read is not None:
        remaining = min(remaining, read)
    return int(remaining * 1000)


@dataclass(frozen=True)
class AttemptTimeoutConfig:
    """Each attempt gets `timeout` seconds of its own, connect and answer included."""

    timeout: float = 1.0

    def __post_init__(self) -> None:
        check_seconds("AttemptTimeoutConfig", "timeout", self.timeout, allow_none=False)


class AttemptTimeout(BasePolicy):
    """A timeout per attempt rather than per call, as most production clients set it (axios' `timeout`
    with axios-retry, a urllib3 `Timeout` with `Retry`, gRPC's per-attempt and Envoy's `per_try_timeout`).

    Each attempt that passes gets a deadline `timeout` after it starts (never later than the call's own,
    if it has one), so every retry gets a fresh full timeout: with immediate retries, a call that times
    out is sent `max_attempts` times, each for as long as the first. That is the client whose retries
    keep a server in a metastable failure. The attempt's deadline is what `DEADLINE_HEADER` carries.
    """

    name = "attempt-timeout"

    def __init__(self, config: AttemptTimeoutConfig | None = None) -> None:
        super().__init__()
        self.config = config or AttemptTimeoutConfig()

    def execute(self, call: Call, proceed: Next) -> Outcome:
        limit = self.clock.now() + self.config.timeout
        deadline = limit if call.deadline is None else min(call.deadline, limit)
        return proceed(dataclasses.replace(call, deadline=deadline))
