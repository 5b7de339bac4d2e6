"""A FIFO admission gate: at most `limit` holders at once, the rest wait in arrival order.

`Throttle` (queue mode) and `SocketPool` both need "wait for a slot, first come first served, for at
most so long". They share this one gate rather than two copies of the same tricky code.

Why not `gevent.lock.BoundedSemaphore`? Its waiters are not strictly FIFO once timeouts and kills mix in,
it cannot bound the queue, and it cannot show how many are waiting or for how long. Here:

- no lock is held while a holder works: the gate is two counters and a deque of per-waiter events;
- a leaving holder hands its slot straight to the oldest live waiter, so a newcomer can never barge
  past the queue (strict FIFO);
- a waiter that times out or is killed (GreenletExit) leaves no slot behind: if the slot reached it
  first, it is passed on;
- waits go through `clock.wait(event, timeout)`, so `FakeClock` tests never sleep.
"""

from __future__ import annotations

import enum
from collections import deque

import gevent.event

from mitigations.core import BasePolicy, Call, Clock, Gauges, Next, Outcome, QueuedPastDeadline, Shed


class Entry(enum.Enum):
    """How an attempt to enter the gate ended."""

    ADMITTED = "admitted"
    FULL = "full"  # the waiting queue was at its bound: not queued at all
    TIMED_OUT = "timed-out"  # queued, but no slot came in time


class _Waiter:
    __slots__ = ("cancelled", "event")

    def __init__(self) -> None:
        self.event = gevent.event.Event()
        self.cancelled = False


class FifoGate:
    """Counts holders against `limit` (None: unlimited) and queues the rest, at most `queue_limit` of them.

    Gauges: `in_use` (holders), `waiting` (live waiters). Wait statistics cover calls that had to queue:
    `waits` (how many), `total_wait` and `last_wait` (seconds on the gate's clock).
    """

    def __init__(self, limit: int | None, queue_limit: int | None = None) -> None:
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1 or None, got {limit}")
        if queue_limit is not None and queue_limit < 0:
            raise ValueError(f"queue_limit must be >= 0 or None, got {queue_limit}")
        self._limit = limit
        self.queue_limit = queue_limit
        self.in_use = 0
        self.waiting = 0
        self.waits = 0
        self.total_wait = 0.0
        self.last_wait = 0.0
        self._queue: deque[_Waiter] = deque()

    @property
    def limit(self) -> int | None:
        return self._limit

    def set_limit(self, limit: int | None) -> None:
        """Move the cap. Raising it admits waiters at once; lowering it lets holders drain below it."""
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1 or None, got {limit}")
        self._limit = limit
        while self._has_room() and self._hand_off():
            self.in_use += 1

    def _has_room(self) -> bool:
        return self._limit is None or self.in_use < self._limit

    def try_enter(self) -> bool:
        """Take a slot now if one is free and nobody is queued ahead. Never waits."""
        if self.waiting == 0 and self._has_room():
            self.in_use += 1
            return True
        return False

    def enter(self, clock: Clock, timeout: float | None) -> Entry:
        """Take a slot, waiting in line at most `timeout` seconds (None: as long as it takes).

        On ADMITTED the caller holds a slot and must `leave()` exactly once, in a `finally`.
        """
        if self.try_enter():
            return Entry.ADMITTED
        if self.queue_limit is not None and self.waiting >= self.queue_limit:
            return Entry.FULL
        if timeout is not None and timeout <= 0:
            return Entry.TIMED_OUT
        waiter = _Waiter()
        self._queue.append(waiter)
        self.waiting += 1
        started = clock.now()
        try:
            clock.wait(waiter.event, timeout)
        except BaseException:
            # Killed while queued. If the slot was already handed to us, pass it on; else leave the line.
            if waiter.event.is_set():
                self.leave()
            else:
                self._cancel(waiter)
            raise
        finally:
            self._note_wait(clock.now() - started)
        # The event, not wait()'s return value, says who owns the slot: a hand-off may race the timeout.
        if waiter.event.is_set():
            return Entry.ADMITTED
        self._cancel(waiter)
        return Entry.TIMED_OUT

    def leave(self) -> None:
        """Give a slot back: straight to the oldest waiter if there is one and room for it."""
        self.in_use -= 1
        if self._has_room() and self._hand_off():
            self.in_use += 1

    def _hand_off(self) -> bool:
        while self._queue:
            waiter = self._queue.popleft()
            if waiter.cancelled:
                continue
            self.waiting -= 1
            waiter.event.set()
            return True
        return False

    def _cancel(self, waiter: _Waiter) -> None:
        waiter.cancelled = True
        self.waiting -= 1
        # Cancelled waiters are skipped lazily; compact now and then so a long stall cannot grow the deque.
        if len(self._queue) > 2 * self.waiting + 32:
            self._queue = deque(w for w in self._queue if not w.cancelled)

    def _note_wait(self, seconds: float) -> None:
        self.waits += 1
        self.total_wait += seconds
        self.last_wait = seconds


class GatedPolicy(BasePolicy):
    """A policy in front of a `FifoGate`: the counters, the wait gauges and the admit-or-shed decision
    that `Throttle`, `AdaptiveLimit` and `SocketPool` share.

    Gauges: `in_flight` (holders), `queued` (waiters), shown on the board under the names a subclass
    gives them (`in_flight_gauge`, None: not shown; `queued_gauge`). Counters: `admitted`, `rejected`
    (shed with the policy's own `rejection`), `expired` (shed with QueuedPastDeadline: the call's
    deadline ended the wait). Waits: `waits`, `total_wait`, `last_wait`.
    """

    rejection: type[Shed] = Shed
    in_flight_gauge: str | None = None
    queued_gauge = "queue_depth"

    def __init__(self, limit: int | None, queue_limit: int | None) -> None:
        super().__init__()
        self.gate = FifoGate(limit, queue_limit=queue_limit)
        self.admitted = 0
        self.rejected = 0
        self.expired = 0

    @property
    def in_flight(self) -> int:
        return self.gate.in_use

    @property
    def queued(self) -> int:
        return self.gate.waiting

    def gauges(self, wall_now: float) -> Gauges:
        shown: Gauges = {self.queued_gauge: self.queued}
        if self.in_flight_gauge is not None:
            shown[self.in_flight_gauge] = self.in_flight
        return shown

    @property
    def waits(self) -> int:
        return self.gate.waits

    @property
    def total_wait(self) -> float:
        return self.gate.total_wait

    @property
    def last_wait(self) -> float:
        return self.gate.last_wait

    def admit(self, call: Call, *, queue: bool, queue_timeout: float | None) -> Outcome | None:
        """Take a slot for `call` and return None, or return its shed outcome.

        Without `queue`, only a free slot will do. With it, wait in line for at most `queue_timeout`
        (None: no limit of its own) and never past the last moment the call may be sent (`send_by`,
        before its deadline); a call past that is shed at once, free slot or not, since it could only
        fail on the wire, and the failure would be blamed on the server.
        """
        remaining = call.sendable(self.clock.now())
        if remaining == 0:
            return self._expire(call)
        if not queue:
            if self.gate.try_enter():
                return self._admitted()
            return self._reject(call)
        deadline_first = remaining is not None and (queue_timeout is None or remaining <= queue_timeout)
        entry = self.gate.enter(self.clock, remaining if deadline_first else queue_timeout)
        if entry is Entry.ADMITTED:
            return self._admitted()
        if entry is Entry.TIMED_OUT and deadline_first:
            return self._expire(call)
        return self._reject(call)

    def guarded(self, call: Call, proceed: Next, *, queue: bool, queue_timeout: float | None) -> Outcome:
        """Admit `call` (or shed it), run the rest of the pipeline, and give the slot back."""
        refusal = self.admit(call, queue=queue, queue_timeout=queue_timeout)
        if refusal is not None:
            return refusal
        try:
            return proceed(call)
        finally:
            self.gate.leave()

    def _admitted(self) -> None:
        self.admitted += 1
        return None

    def _reject(self, call: Call) -> Outcome:
        self.rejected += 1
        return self.shed(call, self.rejection())

    def _expire(self, call: Call) -> Outcome:
        self.expired += 1
        return self.shed(call, QueuedPastDeadline())
