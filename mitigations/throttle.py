"""Throttle: a cap on concurrent calls, the seed's MAX_CONCURRENT made into a bulkhead.

The seed's client cancelled any new request while MAX_CONCURRENT were active, so an overloaded server
sees at most that many of this client's requests, and the client sheds the rest at once instead of
piling up thousands. (The seed tested `concurrent > MAX_CONCURRENT`, which lets one extra through; here
the cap is exact, so "never more than max_concurrent in flight" is a property tests can check.)

Two modes, after resilience4j's semaphore Bulkhead (`maxConcurrentCalls`, `maxWaitDuration`):

- `cancel`: over the cap, shed at once with `ThrottleRejected` (the seed; a Bulkhead with zero wait).
- `queue`: wait in a bounded FIFO queue (`queue_size`) for at most `queue_timeout` seconds. A full queue
  or a wait that runs out sheds with `ThrottleRejected`. The wait never runs past the call's own
  deadline: if that is what ran out, the call is shed with `QueuedPastDeadline` (cause `deadline`).

The permit is released in a `finally`, so errors and killed greenlets (GreenletExit) give it back.
No lock is held across the call: admission is a counter and a queue of events (`FifoGate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mitigations._checks import check_choice, check_int, check_seconds
from mitigations.admission import GatedPolicy
from mitigations.core import ThrottleRejected

ThrottleMode = Literal["cancel", "queue"]
THROTTLE_MODES: tuple[ThrottleMode, ...] = ("cancel", "queue")


@dataclass(frozen=True)
class ThrottleConfig:
    """`max_concurrent` calls at once; in `queue` mode up to `queue_size` more wait, each at most
    `queue_timeout` seconds. `queue_size` and `queue_timeout` are ignored in `cancel` mode."""

    max_concurrent: int
    mode: ThrottleMode = "cancel"
    queue_size: int = 100
    queue_timeout: float = 1.0

    def __post_init__(self) -> None:
        check_int("ThrottleConfig", "max_concurrent", self.max_concurrent, minimum=1)
        check_choice("ThrottleConfig", "mode", self.mode, THROTTLE_MODES)
        check_int("ThrottleConfig", "queue_size", self.queue_size, minimum=1)
        check_seconds("ThrottleConfig", "queue_timeout", self.queue_timeout)


class Throttle(GatedPolicy):
    """At most `config.max_concurrent` calls proceed at once; the rest are shed or queue (see module doc).

    Gauges (`GatedPolicy`): `in_flight` (on the board: `throttle_in_flight`), `queued`. Counters:
    `admitted`, `rejected` (ThrottleRejected: over the cap, queue full, or queue wait ran out), `expired`
    (the call's deadline ran out in the queue). Queue waits: `waits`, `total_wait`, `last_wait` (seconds).
    """

    name = "throttle"
    rejection = ThrottleRejected
    in_flight_gauge = "throttle_in_flight"

    def __init__(self, config: ThrottleConfig) -> None:
        super().__init__(config.max_concurrent, config.queue_size if config.mode == "queue" else 0)
        self.config = config
        self.queue = config.mode == "queue"  # how `GatedPolicy.execute` admits
        self.queue_timeout = config.queue_timeout
