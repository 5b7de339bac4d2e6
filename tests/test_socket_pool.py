"""SocketPool: at most max_sockets calls on the wire, the rest wait FIFO (unbounded) until a socket frees
or their deadline passes; the wait is visible. Fake time only, except one real-time check."""

import time

import gevent
import pytest

from mitigations import (
    Call,
    MonotonicClock,
    Outcome,
    Pipeline,
    PipelineEvents,
    QueuedPastDeadline,
    SocketPool,
    SocketPoolConfig,
)
from tests.policy_kit import HeldCalls, SteppedClock, answer, make_call, run


def bound(config: SocketPoolConfig, clock) -> SocketPool:
    pool = SocketPool(config)
    pool.bind(clock, PipelineEvents())
    return pool


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"max_sockets": 0}, "max_sockets"),
        ({"max_sockets": -3}, "max_sockets"),
        ({"max_sockets": 1.5}, "max_sockets"),
        ({"keep_alive": "yes"}, "keep_alive"),
    ],
)
def test_bad_config_fails_at_construction_with_one_line_naming_the_value(kwargs, word):
    with pytest.raises(ValueError, match=word) as caught:
        SocketPoolConfig(**kwargs)
    assert "\n" not in str(caught.value)


def test_defaults_are_the_seeds_agent_unlimited_and_no_keep_alive():
    config = SocketPoolConfig()
    assert config.max_sockets is None and config.keep_alive is False


def test_unlimited_pool_admits_everything_at_once():
    clock = SteppedClock()
    pool = bound(SocketPoolConfig(max_sockets=None), clock)
    wire = HeldCalls(clock)
    for i in range(50):
        run(pool, make_call(clock, f"/{i}"), wire)
    assert pool.in_use == 50 and pool.waiting == 0 and wire.inside == 50
    wire.release(50)
    assert pool.in_use == 0 and pool.waits == 0


def test_capped_pool_queues_fifo_and_the_wait_is_visible():
    clock = SteppedClock()
    pool = bound(SocketPoolConfig(max_sockets=2), clock)
    wire = HeldCalls(clock)
    greenlets = [run(pool, make_call(clock, f"/{i}"), wire) for i in range(5)]
    assert pool.in_use == 2 and pool.waiting == 3 and wire.order == ["/0", "/1"]
    clock.advance(0.25)
    wire.release()
    assert wire.order == ["/0", "/1", "/2"] and pool.waiting == 2
    assert pool.waits == 1 and pool.last_wait == pytest.approx(0.25)
    clock.advance(0.5)
    wire.release(4)
    assert wire.order == ["/0", "/1", "/2", "/3", "/4"] and wire.peak == 2
    assert all(g.value.ok for g in greenlets)
    assert pool.waits == 3 and pool.total_wait == pytest.approx(0.25 + 0.75 + 0.75)
    assert pool.mean_wait == pytest.approx(1.75 / 3) and pool.in_use == 0


def test_without_a_deadline_a_call_waits_as_long_as_it_takes():
    clock = SteppedClock()
    pool = bound(SocketPoolConfig(max_sockets=1), clock)
    wire = HeldCalls(clock)
    run(pool, make_call(clock, "/holder"), wire)
    waiter = run(pool, make_call(clock, "/waiter"), wire)
    clock.advance(3600)
    assert not waiter.ready() and pool.waiting == 1
    wire.release(2)
    assert waiter.value.ok and pool.last_wait == pytest.approx(3600)


def test_a_call_waiting_past_its_deadline_is_shed_and_never_reaches_the_wire():
    clock = SteppedClock()
    pool = bound(SocketPoolConfig(max_sockets=1), clock)
    shed = []
    pool.events.on("shed", shed.append)
    wire = HeldCalls(clock)
    run(pool, make_call(clock, "/holder"), wire)
    waiter = run(pool, make_call(clock, "/waiter", deadline_in=0.5), wire)
    clock.advance(0.45)
    assert not waiter.ready()
    clock.advance(0.1)
    outcome = waiter.value
    assert isinstance(outcome.error, QueuedPastDeadline) and outcome.kind == "shed:deadline"
    assert shed == [outcome] and pool.expired == 1 and pool.waiting == 0 and wire.order == ["/holder"]
    wire.release()
    assert pool.in_use == 0


def test_the_deadline_counts_from_launch_so_it_covers_time_already_queued_upstream():
    clock = SteppedClock()
    pool = SocketPool(SocketPoolConfig(max_sockets=1))
    wire = HeldCalls(clock)

    class Held:
        def send(self, call: Call) -> Outcome:
            return wire(call)

    # min_wire_share=0: the whole deadline may be spent queued (the share rule is tested in test_blame.py).
    pipeline = Pipeline([pool], Held(), clock=clock, total_timeout=1.0, min_wire_share=0.0)
    gevent.spawn(pipeline.execute, Call("GET", "/holder", launched_at=clock.now()))
    late = gevent.spawn(pipeline.execute, Call("GET", "/late", launched_at=clock.now() - 0.7))
    gevent.idle()
    clock.advance(0.31)  # 0.7 s already spent before the pool + 0.31 s here > 1.0 s
    assert late.value.kind == "shed:deadline" and pool.last_wait == pytest.approx(0.31)


def test_a_call_arriving_with_its_deadline_gone_is_shed_even_with_a_free_socket():
    clock = SteppedClock()
    pool = bound(SocketPoolConfig(max_sockets=4), clock)
    call = make_call(clock, deadline_in=0.1)
    clock.advance(0.2)
    wire = HeldCalls(clock)
    assert run(pool, call, wire).value.kind == "shed:deadline" and wire.order == []


def test_sockets_come_back_on_errors_and_killed_greenlets():
    clock = SteppedClock()
    pool = bound(SocketPoolConfig(max_sockets=1), clock)

    def explode(call):
        raise RuntimeError("transport bug")

    with pytest.raises(RuntimeError):
        pool.execute(make_call(clock), explode)
    wire = HeldCalls(clock)
    holder = run(pool, make_call(clock, "/holder"), wire)
    waiter = run(pool, make_call(clock, "/waiter"), wire)
    waiter.kill()
    holder.kill()
    assert pool.in_use == 0 and pool.waiting == 0
    assert run(pool, make_call(clock), answer(clock)).value.ok


def test_no_lock_is_held_across_the_call_in_real_time():
    clock = MonotonicClock()
    pool = bound(SocketPoolConfig(max_sockets=20), clock)
    slow = answer(clock, takes=0.05)
    started = time.monotonic()
    greenlets = [gevent.spawn(pool.execute, make_call(clock), slow) for _ in range(20)]
    gevent.joinall(greenlets, timeout=5)
    assert all(g.value.ok for g in greenlets)
    assert time.monotonic() - started < 0.5  # serialised calls would take 20 x 0.05 = 1.0 s
