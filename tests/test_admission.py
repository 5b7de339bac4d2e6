"""FifoGate, the queue shared by Throttle and SocketPool: hand-off races and moving the limit."""

import gevent

from mitigations.admission import Entry, FifoGate
from tests.policy_kit import SteppedClock


def test_a_waiter_killed_after_being_handed_a_slot_passes_it_on():
    clock, gate = SteppedClock(), FifoGate(1)
    assert gate.try_enter()
    doomed = gevent.spawn(gate.enter, clock, 10.0)
    heir = gevent.spawn(gate.enter, clock, 10.0)
    gevent.idle()
    assert gate.waiting == 2
    doomed.kill(block=False)  # the GreenletExit lands on its next switch...
    gate.leave()  # ...after this hands it the slot: it must pass the slot on as it dies
    assert heir.get(timeout=1) is Entry.ADMITTED
    assert doomed.dead and gate.in_use == 1 and gate.waiting == 0


def test_a_full_queue_refuses_without_queueing():
    clock, gate = SteppedClock(), FifoGate(1, queue_limit=1)
    assert gate.try_enter()
    waiter = gevent.spawn(gate.enter, clock, 5.0)
    gevent.idle()
    assert gate.enter(clock, 5.0) is Entry.FULL and gate.waiting == 1
    clock.advance(5.0)
    assert waiter.value is Entry.TIMED_OUT and gate.waiting == 0 and gate.in_use == 1


def test_raising_the_limit_admits_waiters_and_lowering_it_drains():
    clock, gate = SteppedClock(), FifoGate(1)
    assert gate.try_enter()
    waiters = [gevent.spawn(gate.enter, clock, 5.0) for _ in range(3)]
    gevent.idle()
    gate.set_limit(3)
    gevent.idle()
    assert [w.ready() for w in waiters] == [True, True, False] and gate.in_use == 3
    gate.set_limit(1)
    gate.leave()
    gate.leave()
    assert gate.in_use == 1 and gate.waiting == 1  # still over the new limit: nobody admitted
    gate.leave()
    gevent.idle()
    assert waiters[2].value is Entry.ADMITTED and gate.in_use == 1


def test_many_timed_out_waiters_do_not_grow_the_queue_without_bound():
    clock, gate = SteppedClock(), FifoGate(1)
    assert gate.try_enter()
    for _ in range(10):
        waiters = [gevent.spawn(gate.enter, clock, 1.0) for _ in range(100)]
        gevent.idle()
        clock.advance(1.0)
        assert all(w.value is Entry.TIMED_OUT for w in waiters)
    assert gate.waiting == 0 and len(gate._queue) <= 32


def test_a_critical_newcomer_takes_the_newest_sheddable_place_in_a_full_queue():
    """Seam queue bound x criticality (found by tests/test_gate_property.py): a queue full of sheddable
    waiters refused a critical call, which the docs say may pass them."""
    clock, gate = SteppedClock(), FifoGate(1, queue_limit=2)
    assert gate.try_enter()
    older = gevent.spawn(gate.enter, clock, 5.0, True)
    newer = gevent.spawn(gate.enter, clock, 5.0, True)
    gevent.idle()
    critical = gevent.spawn(gate.enter, clock, 5.0, False)
    gevent.idle()
    assert newer.value is Entry.FULL and not older.ready()  # the newest gives up its place
    assert (gate.waiting, gate.waiting_sheddable) == (2, 1)
    assert gate.enter(clock, 5.0, True) is Entry.FULL  # a sheddable newcomer still finds it full
    gate.leave()
    assert critical.get(timeout=1) is Entry.ADMITTED and not older.ready()


def test_a_critical_call_that_may_not_wait_times_out_and_takes_no_place_in_a_full_queue():
    """Seam queue timeout 0 x criticality (found by tests/test_gate_property.py in CI): with sheddable
    waiters it could pass, a critical call that may not wait was refused as FULL, and nothing was gained
    by evicting one of them for a call that would not stay."""
    clock, gate = SteppedClock(), FifoGate(1, queue_limit=2)
    assert gate.try_enter()
    critical = gevent.spawn(gate.enter, clock, 5.0, False)
    sheddable = gevent.spawn(gate.enter, clock, 5.0, True)
    gevent.idle()
    assert gate.enter(clock, 0.0, False) is Entry.TIMED_OUT
    assert (gate.waiting, gate.waiting_sheddable) == (2, 1) and not sheddable.ready()
    gate.leave()
    assert critical.get(timeout=1) is Entry.ADMITTED
    gate.leave()
    assert sheddable.get(timeout=1) is Entry.ADMITTED


def test_a_waiter_killed_after_its_eviction_gives_back_no_slot():
    clock, gate = SteppedClock(), FifoGate(1, queue_limit=1)
    assert gate.try_enter()
    evicted = gevent.spawn(gate.enter, clock, 5.0, True)
    gevent.idle()

    def holder_leaves() -> None:
        gevent.idle()  # after the kill below has landed
        gate.leave()

    holder = gevent.spawn(holder_leaves)
    evicted.kill(block=False)  # lands once the critical call below has taken its place
    assert gate.enter(clock, 5.0, False) is Entry.ADMITTED
    holder.join(timeout=1)  # both have left now: a slot given back twice would show here
    assert evicted.dead and (gate.in_use, gate.waiting, gate.waiting_sheddable) == (1, 0, 0)
