"""Test doubles for the policy unit tests: a clock that only moves when told, and calls held on the wire.

`SteppedClock` is a `FakeClock` whose `wait` really parks the greenlet until its event is set or the test
advances time past its timeout. (Plain `FakeClock.wait` lets time run out after one scheduler turn, which
is right for a lone waiter but cannot show several waiters being served in order.) Nothing here sleeps.
"""

from __future__ import annotations

import gevent
import gevent.event

from mitigations.core import Call, Clock, FakeClock, HammerError, Outcome


class SteppedClock(FakeClock):
    """Time moves only on `advance`; waiters whose timeout has passed wake then, others keep waiting."""

    def __init__(self, start: float = 1000.0) -> None:
        super().__init__(start)
        self._timers: list[tuple[float, gevent.event.Event]] = []

    def wait(self, event: gevent.event.Event, timeout: float | None) -> bool:
        if event.is_set():
            return True
        if timeout is not None and timeout <= 0:
            return False
        wake = gevent.event.Event()
        timer = None if timeout is None else (self.now() + timeout, wake)
        if timer is not None:
            self._timers.append(timer)
        try:
            gevent.wait([event, wake], count=1)
        finally:
            if timer in self._timers:
                self._timers.remove(timer)
        return event.is_set()

    def advance(self, seconds: float) -> None:
        super().advance(seconds)
        for deadline, wake in list(self._timers):
            if deadline <= self.now() + 1e-9:
                wake.set()
        gevent.idle()


def make_call(clock: Clock, path: str = "/doWork", deadline_in: float | None = None) -> Call:
    call = Call("GET", path, launched_at=clock.now())
    if deadline_in is not None:
        call.deadline = clock.now() + deadline_in
    return call


def answer(clock: Clock, status: int = 200, error: HammerError | None = None, takes: float = 0.0):
    """A `proceed` that answers at once (after `takes` seconds of fake time)."""

    def proceed(call: Call) -> Outcome:
        if takes:
            clock.sleep(takes)
        return Outcome(call=call, finished_at=clock.now(), status=status, error=error)

    return proceed


class HeldCalls:
    """A `proceed` whose calls stay on the wire until the test releases them, oldest first.

    Records the order calls reached it (`order`, by path), how many are inside now and at peak.
    """

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.order: list[str] = []
        self.inside = 0
        self.peak = 0
        self._held: list[tuple[gevent.event.Event, list[HammerError | None]]] = []

    def __call__(self, call: Call) -> Outcome:
        self.order.append(call.path)
        self.inside += 1
        self.peak = max(self.peak, self.inside)
        gate = gevent.event.Event()
        verdict: list[HammerError | None] = [None]
        self._held.append((gate, verdict))
        try:
            gate.wait()
        finally:
            self.inside -= 1
        error = verdict[0]
        return Outcome(call=call, finished_at=self.clock.now(), status=None if error else 200, error=error)

    def release(self, count: int = 1, error: HammerError | None = None) -> None:
        """Let the `count` oldest held calls finish, one at a time (with `error`, else 200), letting
        everything runnable run after each, so calls admitted meanwhile can be released too."""
        for _ in range(count):
            gate, verdict = self._held.pop(0)
            verdict[0] = error
            gate.set()
            gevent.idle()


def run(policy, call: Call, proceed) -> gevent.Greenlet:
    """Start `policy.execute(call, proceed)` in its own greenlet and let it get as far as it can."""
    greenlet = gevent.spawn(policy.execute, call, proceed)
    gevent.idle()
    return greenlet
