"""The admission gate's criticality reserve, for any interleaving (hypothesis, fake time, no sleeping).

`FifoGate` with a reserve is where the throttle, the adaptive limit (which moves the limit) and the
criticality mix meet. Hypothesis draws a limit, a queue bound, a reserve and a sequence of arrivals
(critical or sheddable, with a queue timeout), departures, kills of queued calls, limit moves and clock
steps. After every step:

- the gate's counters match the holders and waiters the test can see;
- sheddable calls never hold more than `limit - reserved` slots, and nobody more than `limit` (both
  from the last time the limit was lowered, when holders drain above the new cap);
- nobody waits while a slot their line may take is free (critical: up to the limit; sheddable: up to
  the sheddable limit, and only with no critical waiter);
- a critical arrival is refused only when the queue is full of critical waiters: it may pass the
  sheddable ones, so a sheddable waiter never keeps it out;

and when every holder has left and every waiter has given up, every count is back to zero.
"""

from __future__ import annotations

import gevent
import gevent.event
from hypothesis import given, settings
from hypothesis import strategies as st

from mitigations.admission import Entry, FifoGate
from tests.policy_kit import SteppedClock

EXAMPLES = 150


class Caller:
    """One call at the gate: queued, then holding a slot until the test lets it go."""

    def __init__(self, gate: FifoGate, clock: SteppedClock, sheddable: bool, timeout: float | None) -> None:
        self.gate, self.sheddable = gate, sheddable
        self.release = gevent.event.Event()
        self.entry: Entry | None = None
        self.queue_before = (0, 0)
        self.greenlet = gevent.spawn(self.run, clock, timeout)

    def run(self, clock: SteppedClock, timeout: float | None) -> None:
        self.queue_before = (self.gate.waiting, self.gate.waiting_sheddable)  # what it found on arrival
        self.entry = self.gate.enter(clock, timeout, self.sheddable)
        if self.entry is Entry.ADMITTED:
            try:
                self.release.wait()
            finally:
                self.gate.leave()

    @property
    def holding(self) -> bool:
        return self.entry is Entry.ADMITTED and not self.greenlet.dead

    @property
    def waiting(self) -> bool:
        return self.entry is None and not self.greenlet.dead


arrive = st.tuples(st.just("arrive"), st.booleans(), st.sampled_from((None, 0.0, 0.1, 0.5)))
steps = st.one_of(
    *[arrive] * 5,  # mostly arrivals, so that the queue fills
    st.tuples(st.just("leave"), st.integers(0, 50), st.none()),
    st.tuples(st.just("kill"), st.integers(0, 50), st.none()),
    st.tuples(st.just("limit"), st.integers(1, 6), st.none()),
    st.tuples(st.just("advance"), st.sampled_from((0.05, 0.2)), st.none()),
)


def check(gate: FifoGate, callers: list[Caller], caps: list[int]) -> None:
    """`caps`: the most holders and sheddable holders allowed, updated here: a lowered limit lets the
    holders above it drain, so a cap falls to the limit only as they leave, and never rises above it."""
    holding = [c for c in callers if c.holding]
    waiting = [c for c in callers if c.waiting]
    assert gate.in_use == len(holding)
    assert gate.waiting == len(waiting)
    assert gate.waiting_sheddable == sum(c.sheddable for c in waiting)
    limit, sheddable_limit = gate.limit, gate.sheddable_limit
    assert limit is not None and sheddable_limit is not None
    sheddable_holding = sum(c.sheddable for c in holding)
    assert gate.in_use <= max(limit, caps[0]), "more holders than the limit"
    assert sheddable_holding <= max(sheddable_limit, caps[1]), "sheddable calls hold reserved slots"
    caps[:] = [max(limit, gate.in_use), max(sheddable_limit, sheddable_holding)]
    if any(not c.sheddable for c in waiting):
        assert gate.in_use >= limit, "a critical call waits beside a free slot"
    if any(c.sheddable for c in waiting) and not any(not c.sheddable for c in waiting):
        assert gate.in_use >= sheddable_limit, "a sheddable call waits beside a slot outside the reserve"


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    limit=st.integers(1, 3),
    queue_limit=st.sampled_from((None, 0, 1, 2)),
    reserve=st.sampled_from((0.0, 0.3, 0.5, 0.7, 1.0)),
    script=st.lists(steps, min_size=8, max_size=40),
)
def test_the_reserve_holds_and_the_counts_return_to_zero(limit, queue_limit, reserve, script):
    clock, gate = SteppedClock(), FifoGate(limit, queue_limit=queue_limit, reserve=reserve)
    callers: list[Caller] = []
    caps = [limit, gate.sheddable_limit or 0]
    for op, arg, timeout in script:
        if op == "arrive":
            callers.append(Caller(gate, clock, arg, timeout))
        elif op == "limit":
            gate.set_limit(arg)
        elif op == "advance":
            clock.advance(arg)
        else:
            chosen = [c for c in callers if (c.holding if op == "leave" else c.waiting)]
            if chosen:
                target = chosen[arg % len(chosen)]
                target.release.set() if op == "leave" else target.greenlet.kill()
        if op == "limit":  # the holders it finds may stay above a lowered limit until they leave
            caps = [max(gate.limit or 0, gate.in_use), max(caps[1], gate.sheddable_limit or 0)]
        gevent.idle()
        check(gate, callers, caps)
        for caller in callers:
            if queue_limit is None:  # an unbounded line refuses nobody as full
                assert caller.entry is not Entry.FULL, "refused as full by an unbounded queue"
            if caller.entry is Entry.FULL and not caller.sheddable:
                critical_waiting = caller.queue_before[0] - caller.queue_before[1]
                assert critical_waiting >= (queue_limit or 0), "a critical call refused for sheddable waiters"
    for caller in callers:  # the end: everyone leaves or gives up
        caller.release.set()
        caller.greenlet.kill()
    gevent.idle()
    assert (gate.in_use, gate.waiting, gate.waiting_sheddable) == (0, 0, 0)
