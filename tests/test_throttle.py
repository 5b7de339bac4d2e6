"""Throttle: the cap is exact, cancel sheds at once, the queue is bounded, FIFO and deadline-aware,
and a permit always comes back (errors, killed greenlets). Fake time only, except one real-time check."""

import time

import gevent
import pytest

from mitigations import (
    MonotonicClock,
    PipelineEvents,
    QueuedPastDeadline,
    Throttle,
    ThrottleConfig,
    ThrottleRejected,
)
from tests.policy_kit import HeldCalls, SteppedClock, answer, make_call, run


def bound(config: ThrottleConfig, clock) -> Throttle:
    throttle = Throttle(config)
    throttle.bind(clock, PipelineEvents())
    return throttle


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"max_concurrent": 0}, "max_concurrent"),
        ({"max_concurrent": True}, "max_concurrent"),
        ({"max_concurrent": 2.5}, "max_concurrent"),
        ({"max_concurrent": 5, "mode": "drop"}, "mode"),
        ({"max_concurrent": 5, "queue_size": 0}, "queue_size"),
        ({"max_concurrent": 5, "queue_timeout": 0}, "queue_timeout"),
        ({"max_concurrent": 5, "queue_timeout": float("nan")}, "queue_timeout"),
    ],
)
def test_bad_config_fails_at_construction_with_one_line_naming_the_value(kwargs, word):
    with pytest.raises(ValueError, match=word) as caught:
        ThrottleConfig(**kwargs)
    assert "\n" not in str(caught.value) and "got" in str(caught.value)


def test_cancel_mode_caps_exactly_and_sheds_the_rest_at_once():
    clock = SteppedClock()
    throttle = bound(ThrottleConfig(max_concurrent=3), clock)
    wire = HeldCalls(clock)
    shed = []
    throttle.events.on("shed", shed.append)
    greenlets = [run(throttle, make_call(clock, f"/{i}"), wire) for i in range(5)]
    assert throttle.in_flight == 3 and wire.inside == 3 and throttle.queued == 0
    rejected = [g.value for g in greenlets if g.ready()]
    assert [o.kind for o in rejected] == ["shed:throttle", "shed:throttle"]
    assert all(isinstance(o.error, ThrottleRejected) and o.finished_at == clock.now() for o in rejected)
    assert shed == rejected and throttle.rejected == 2
    wire.release(3)
    assert throttle.in_flight == 0 and throttle.admitted == 3 and wire.peak == 3
    assert run(throttle, make_call(clock), answer(clock)).value.ok


def test_queue_mode_serves_waiters_in_arrival_order_and_newcomers_do_not_barge():
    clock = SteppedClock()
    throttle = bound(ThrottleConfig(max_concurrent=1, mode="queue", queue_size=5, queue_timeout=10), clock)
    wire = HeldCalls(clock)
    greenlets = [run(throttle, make_call(clock, p), wire) for p in ("/a", "/b", "/c", "/d")]
    assert throttle.in_flight == 1 and throttle.queued == 3 and wire.order == ["/a"]
    wire.release()
    assert wire.order == ["/a", "/b"] and throttle.queued == 2
    greenlets.append(run(throttle, make_call(clock, "/e"), wire))  # arrives while /c and /d wait
    assert throttle.queued == 3
    for _ in range(4):
        wire.release()
    assert wire.order == ["/a", "/b", "/c", "/d", "/e"] and wire.peak == 1
    assert all(g.value.ok for g in greenlets) and throttle.in_flight == 0 and throttle.queued == 0


def test_a_full_queue_sheds_immediately_without_waiting():
    clock = SteppedClock()
    throttle = bound(ThrottleConfig(max_concurrent=1, mode="queue", queue_size=2, queue_timeout=5), clock)
    wire = HeldCalls(clock)
    [run(throttle, make_call(clock, f"/{i}"), wire) for i in range(3)]
    started = clock.now()
    overflow = run(throttle, make_call(clock, "/overflow"), wire)
    assert overflow.ready() and overflow.value.kind == "shed:throttle"
    assert overflow.value.finished_at == started and throttle.queued == 2 and throttle.rejected == 1


def test_queue_wait_is_bounded_by_queue_timeout():
    clock = SteppedClock()
    throttle = bound(ThrottleConfig(max_concurrent=1, mode="queue", queue_size=5, queue_timeout=0.5), clock)
    wire = HeldCalls(clock)
    run(throttle, make_call(clock, "/holder"), wire)
    waiter = run(throttle, make_call(clock, "/waiter"), wire)
    clock.advance(0.4)
    assert not waiter.ready() and throttle.queued == 1
    clock.advance(0.2)
    outcome = waiter.value
    assert isinstance(outcome.error, ThrottleRejected) and outcome.latency == pytest.approx(0.6)
    assert throttle.queued == 0 and throttle.rejected == 1 and throttle.expired == 0
    assert throttle.last_wait == pytest.approx(0.6) and wire.order == ["/holder"]
    wire.release()
    assert throttle.in_flight == 0  # the timed-out waiter took no slot with it


def test_queue_wait_never_outlasts_the_calls_deadline():
    clock = SteppedClock()
    throttle = bound(ThrottleConfig(max_concurrent=1, mode="queue", queue_size=5, queue_timeout=10), clock)
    wire = HeldCalls(clock)
    run(throttle, make_call(clock, "/holder"), wire)
    waiter = run(throttle, make_call(clock, "/waiter", deadline_in=0.3), wire)
    clock.advance(0.31)
    outcome = waiter.value
    assert isinstance(outcome.error, QueuedPastDeadline) and outcome.kind == "shed:deadline"
    assert throttle.expired == 1 and throttle.rejected == 0 and throttle.queued == 0


def test_a_call_whose_deadline_has_passed_is_not_queued():
    clock = SteppedClock()
    throttle = bound(ThrottleConfig(max_concurrent=1, mode="queue", queue_size=5, queue_timeout=10), clock)
    wire = HeldCalls(clock)
    run(throttle, make_call(clock, "/holder"), wire)
    late = make_call(clock, "/late", deadline_in=1.0)
    clock.advance(2.0)
    outcome = run(throttle, late, wire).value
    assert outcome.kind == "shed:deadline" and throttle.waits == 0


def test_permit_comes_back_when_the_call_raises():
    clock = SteppedClock()
    throttle = bound(ThrottleConfig(max_concurrent=1), clock)

    def explode(call):
        raise RuntimeError("transport bug")

    with pytest.raises(RuntimeError):
        throttle.execute(make_call(clock), explode)
    assert throttle.in_flight == 0
    assert throttle.execute(make_call(clock), answer(clock)).ok


def test_permit_comes_back_when_the_greenlet_is_killed_on_the_wire_or_in_the_queue():
    clock = SteppedClock()
    throttle = bound(ThrottleConfig(max_concurrent=1, mode="queue", queue_size=5, queue_timeout=10), clock)
    wire = HeldCalls(clock)
    holder = run(throttle, make_call(clock, "/holder"), wire)
    queued = run(throttle, make_call(clock, "/queued"), wire)
    assert throttle.in_flight == 1 and throttle.queued == 1
    queued.kill()
    assert throttle.queued == 0 and throttle.in_flight == 1
    holder.kill()
    assert throttle.in_flight == 0 and wire.inside == 0
    assert run(throttle, make_call(clock, "/next"), answer(clock)).value.ok


def test_no_lock_is_held_across_the_call_in_real_time():
    clock = MonotonicClock()
    throttle = bound(ThrottleConfig(max_concurrent=20), clock)
    slow = answer(clock, takes=0.05)
    started = time.monotonic()
    greenlets = [gevent.spawn(throttle.execute, make_call(clock), slow) for _ in range(20)]
    gevent.joinall(greenlets, timeout=5)
    assert all(g.value.ok for g in greenlets)
    assert time.monotonic() - started < 0.5  # serialised calls would take 20 x 0.05 = 1.0 s
