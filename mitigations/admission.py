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

Criticality (`mitigations.criticality`, docs/criticality.md): a gate may keep `reserve` (a share) of its
limit for critical calls. A sheddable call takes a slot only while fewer than `limit - reserved` are
held; a critical call may take any slot up to `limit`. Critical waiters form a line of their own,
served before the sheddable line, and a critical newcomer may pass sheddable waiters (never critical
ones); when the queue is at its bound, it takes the place of the newest sheddable waiter, which is
refused as if it had come after it. Without a reserve and without sheddable calls it is exactly the
FIFO gate above.
"""

from __future__ import annotations

import enum
from collections import deque

import gevent.event

from mitigations._checks import check_share
from mitigations.core import BasePolicy, Call, Clock, Gauges, Next, Outcome, QueuedPastDeadline, Shed
from mitigations.criticality import SHEDDABLE, criticality_of, reserved_slots


class Entry(enum.Enum):
    """How an attempt to enter the gate ended."""

    ADMITTED = "admitted"
    FULL = "full"  # the queue was at its bound (or a critical newcomer took this call's place in it)
    TIMED_OUT = "timed-out"  # queued, but no slot came in time


class _Waiter:
    __slots__ = ("cancelled", "event", "evicted", "sheddable")

    def __init__(self, sheddable: bool) -> None:
        self.event = gevent.event.Event()
        self.cancelled = False
        self.evicted = False  # woken without a slot: a critical newcomer took its place in a full queue
        self.sheddable = sheddable


class FifoGate:
    """Counts holders against `limit` (None: unlimited) and queues the rest, at most `queue_limit` of them.

    Gauges: `in_use` (holders), `waiting` (live waiters; `waiting_sheddable` of them sheddable). Wait
    statistics cover calls that had to queue: `waits` (how many), `total_wait` and `last_wait` (seconds
    on the gate's clock). `reserve`: the share of the limit only critical calls may hold (module doc).
    """

    def __init__(self, limit: int | None, queue_limit: int | None = None, reserve: float = 0.0) -> None:
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1 or None, got {limit}")
        if queue_limit is not None and queue_limit < 0:
            raise ValueError(f"queue_limit must be >= 0 or None, got {queue_limit}")
        check_share("FifoGate", "reserve", reserve)
        self._limit = limit
        self.queue_limit = queue_limit
        self.reserve = reserve
        self.in_use = 0
        self.waiting = 0
        self.waiting_sheddable = 0
        self.waits = 0
        self.total_wait = 0.0
        self.last_wait = 0.0
        self._queue: deque[_Waiter] = deque()  # critical waiters
        self._sheddable: deque[_Waiter] = deque()

    @property
    def limit(self) -> int | None:
        return self._limit

    @property
    def sheddable_limit(self) -> int | None:
        """The most slots sheddable calls may hold between them and the critical ones: the limit less
        the critical reserve (None: unlimited)."""
        if self._limit is None:
            return None
        return self._limit - reserved_slots(self._limit, self.reserve)

    def set_limit(self, limit: int | None) -> None:
        """Move the cap. Raising it admits waiters at once; lowering it lets holders drain below it."""
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1 or None, got {limit}")
        self._limit = limit
        while self._hand_off():
            self.in_use += 1

    def _has_room(self, sheddable: bool = False) -> bool:
        cap = self.sheddable_limit if sheddable else self._limit
        return cap is None or self.in_use < cap

    def try_enter(self, sheddable: bool = False) -> bool:
        """Take a slot now if one is free for this class and nobody of its line or a higher one is
        queued ahead. Never waits."""
        if sheddable:
            ahead, cap = self.waiting, self.sheddable_limit
        else:  # `_has_room()`, inlined: this runs for every call
            ahead, cap = self.waiting - self.waiting_sheddable, self._limit
        if ahead == 0 and (cap is None or self.in_use < cap):
            self.in_use += 1
            return True
        return False

    def classless(self) -> bool:
        """Whether a call's class (critical or sheddable) cannot change `try_enter`'s answer now: nobody
        waits, so nobody is ahead of either class, and with no reserve both classes have the same cap."""
        return not self.waiting and not self.reserve

    def enter(self, clock: Clock, timeout: float | None, sheddable: bool = False) -> Entry:
        """Take a slot, waiting in line at most `timeout` seconds (None: as long as it takes).

        On ADMITTED the caller holds a slot and must `leave()` exactly once, in a `finally`.
        """
        if self.try_enter(sheddable):
            return Entry.ADMITTED
        full = self.queue_limit is not None and self.waiting >= self.queue_limit
        if full and (sheddable or not self.waiting_sheddable):  # a critical call may pass sheddable ones
            return Entry.FULL
        if timeout is not None and timeout <= 0:  # it may not wait: no place in line is taken from anyone
            return Entry.TIMED_OUT
        if full:
            self._evict_sheddable()
        waiter = _Waiter(sheddable)
        (self._sheddable if sheddable else self._queue).append(waiter)
        self.waiting += 1
        self.waiting_sheddable += sheddable
        started = clock.now()
        try:
            clock.wait(waiter.event, timeout)
        except BaseException:
            # Killed while queued. If the slot was already handed to us, pass it on; else leave the line
            # (an evicted waiter has left it already, holding nothing).
            if waiter.evicted:
                raise
            if waiter.event.is_set():
                self.leave()
            else:
                self._cancel(waiter)
            raise
        finally:
            self._note_wait(clock.now() - started)
        if waiter.evicted:
            return Entry.FULL
        # The event, not wait()'s return value, says who owns the slot: a hand-off may race the timeout.
        if waiter.event.is_set():
            return Entry.ADMITTED
        self._cancel(waiter)
        return Entry.TIMED_OUT

    def leave(self) -> None:
        """Give a slot back: straight to the oldest critical waiter if there is one and room for it,
        else to the oldest sheddable waiter if there is room under the sheddable limit."""
        self.in_use -= 1
        # Nobody waiting (the common case): no one to hand to. Cancelled waiters still in the lines are
        # skipped by the next hand-off, or compacted away by `_cancel`.
        if self.waiting and self._hand_off():
            self.in_use += 1

    def _hand_off(self) -> bool:
        """Wake the next waiter that may take a free slot (the caller counts the slot)."""
        if self._has_room() and self._wake(self._queue):
            return True
        return self._has_room(sheddable=True) and self._wake(self._sheddable)

    def _wake(self, line: deque[_Waiter]) -> bool:
        while line:
            waiter = line.popleft()
            if waiter.cancelled:
                continue
            self.waiting -= 1
            self.waiting_sheddable -= waiter.sheddable
            waiter.event.set()
            return True
        return False

    def _evict_sheddable(self) -> None:
        """A full queue and a critical newcomer: the newest sheddable waiter gives up its place (it
        ends FULL, as it would have had the critical call come first). The caller saw one waiting."""
        while self._sheddable:
            waiter = self._sheddable.pop()
            if waiter.cancelled:
                continue
            waiter.evicted = True
            self.waiting -= 1
            self.waiting_sheddable -= 1
            waiter.event.set()
            return

    def _cancel(self, waiter: _Waiter) -> None:
        waiter.cancelled = True
        self.waiting -= 1
        self.waiting_sheddable -= waiter.sheddable
        # Cancelled waiters are skipped lazily; compact now and then so a long stall cannot grow a deque.
        if len(self._queue) + len(self._sheddable) > 2 * self.waiting + 32:
            self._queue = deque(w for w in self._queue if not w.cancelled)
            self._sheddable = deque(w for w in self._sheddable if not w.cancelled)

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
    honours_criticality = True  # sheddable calls wait behind critical ones, within `gate.reserve`
    # How `execute` admits: wait in line for a slot (`queue`) at most `queue_timeout` seconds (None: no
    # limit of its own; the call's deadline still bounds the wait), or shed at once when none is free.
    queue = False
    queue_timeout: float | None = None

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

    def reserve_for_critical(self, share: float) -> None:
        """Keep `share` of the limit for critical calls (`--criticality-mix`; see the module doc)."""
        check_share(type(self).__name__, "reserve", share)
        self.gate.reserve = share

    def ignore_criticality(self) -> None:
        """Admit every call as critical, labels or not (`--shed-sheddable-first false`: a contrast run
        with the labels counted but honoured by nobody on the client)."""
        self.honours_criticality = False
        self.gate.reserve = 0.0

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

        A sheddable call (`mitigations.criticality`) may only take a slot outside the critical reserve.
        Without `queue`, only a free slot will do. With it, wait in line for at most `queue_timeout`
        (None: no limit of its own) and never past the last moment the call may be sent (`send_by`,
        before its deadline); a call past that is shed at once, free slot or not, since it could only
        fail on the wire, and the failure would be blamed on the server.
        """
        remaining = call.sendable(self.clock.now())
        if remaining == 0:
            return self._expire(call)
        gate = self.gate
        if gate.classless() and gate.try_enter():  # no need to read the call's class from its headers
            self.admitted += 1
            return None
        return self._admit_by_class(call, remaining, queue, queue_timeout)

    def _admit_by_class(
        self, call: Call, remaining: float | None, queue: bool, queue_timeout: float | None
    ) -> Outcome | None:
        """`admit` once the call's class may matter: someone waits, there is a reserve, or no room."""
        sheddable = self.honours_criticality and criticality_of(call.headers) == SHEDDABLE
        if not queue:
            if self.gate.try_enter(sheddable):
                return self._admitted()
            return self._reject(call)
        deadline_first = remaining is not None and (queue_timeout is None or remaining <= queue_timeout)
        entry = self.gate.enter(self.clock, remaining if deadline_first else queue_timeout, sheddable)
        if entry is Entry.ADMITTED:
            return self._admitted()
        if entry is Entry.TIMED_OUT and deadline_first:
            return self._expire(call)
        return self._reject(call)

    def execute(self, call: Call, proceed: Next) -> Outcome:
        """Admit `call` as the subclass queues (`queue`, `queue_timeout`), or shed it; run the rest of the
        pipeline, and give the slot back. `admit`'s common case is inlined here: this runs for every call."""
        gate = self.gate
        remaining = call.sendable(self.clock.now())
        # `gate.classless()`, inlined: nobody waits and no reserve, so the call's class cannot matter.
        if remaining != 0 and not gate.waiting and not gate.reserve and gate.try_enter():
            self.admitted += 1
        else:
            refusal = (
                self._expire(call)
                if remaining == 0
                else self._admit_by_class(call, remaining, self.queue, self.queue_timeout)
            )
            if refusal is not None:
                return refusal
        try:
            return proceed(call)
        finally:
            gate.leave()

    def _admitted(self) -> None:
        self.admitted += 1
        return None

    def _reject(self, call: Call) -> Outcome:
        self.rejected += 1
        return self.shed(call, self.rejection())

    def _expire(self, call: Call) -> Outcome:
        self.expired += 1
        return self.shed(call, QueuedPastDeadline())
