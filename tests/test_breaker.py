"""CircuitBreaker: both modes' state machines, window maths (count and time windows, minimum calls,
slow calls), the half-open probe bound, what counts as failure, and no lock across the call."""

import time

import gevent
import pytest

from mitigations import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitOpen,
    ClientError,
    ConnectTimeout,
    HttpClientError,
    HttpServerError,
    MonotonicClock,
    PipelineEvents,
    ReadTimeout,
    ServiceUnavailable,
    ThrottleRejected,
    TooManyRequests,
)
from mitigations.core import Outcome
from tests.policy_kit import HeldCalls, SteppedClock, answer, make_call, run

FAIL = ServiceUnavailable()


def bound(clock, **settings) -> tuple[CircuitBreaker, list[tuple[str, str]]]:
    breaker = CircuitBreaker(CircuitBreakerConfig(**settings))
    events = PipelineEvents()
    seen: list[tuple[str, str]] = []
    events.on("state", lambda policy, old, new: seen.append((old, new)) if policy is breaker else None)
    breaker.bind(clock, events)
    return breaker, seen


def call_with(breaker, clock, error=None, takes=0.0) -> Outcome:
    return breaker.execute(make_call(clock), answer(clock, error=error, takes=takes))


def rate(clock, **settings):
    base = {
        "mode": "rate",
        "window_type": "count",
        "window_size": 4,
        "minimum_calls": 4,
        "open_duration": 5.0,
    }
    return bound(clock, **{**base, **settings})


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"mode": "sometimes"}, "mode"),
        ({"recent_error_delay": 0}, "recent_error_delay"),
        ({"failure_rate_threshold": 0}, "failure_rate_threshold"),
        ({"failure_rate_threshold": 101}, "failure_rate_threshold"),
        ({"window_type": "sliding"}, "window_type"),
        ({"window_type": "count", "window_size": 2.5}, "window_size"),
        ({"half_open_max_wait": 0}, "half_open_max_wait"),
        ({"half_open_max_wait": float("inf")}, "half_open_max_wait"),
        ({"window_type": "time", "window_size": -1}, "window_size"),
        ({"minimum_calls": 0}, "minimum_calls"),
        ({"window_size": 10, "minimum_calls": 11}, "minimum_calls"),
        ({"slow_call_duration": 0}, "slow_call_duration"),
        ({"slow_call_rate_threshold": 0}, "slow_call_rate_threshold"),
        ({"permitted_calls_in_half_open": 0}, "permitted_calls_in_half_open"),
        ({"open_duration": float("inf")}, "open_duration"),
    ],
)
def test_bad_config_fails_at_construction_with_one_line_naming_the_value(kwargs, word):
    with pytest.raises(ValueError, match=word) as caught:
        CircuitBreakerConfig(**kwargs)
    assert "\n" not in str(caught.value)


def test_a_time_window_may_need_more_calls_than_its_size_in_seconds():
    config = CircuitBreakerConfig(window_type="time", window_size=1.0, minimum_calls=50)
    assert config.minimum_calls == 50


# -- recent-error mode (the seed) -------------------------------------------------------------------------


def test_recent_error_opens_on_a_server_failure_and_sheds_for_the_delay():
    clock = SteppedClock()
    breaker, seen = bound(clock, mode="recent-error", recent_error_delay=2.0)
    assert call_with(breaker, clock).ok and breaker.state == "closed"
    call_with(breaker, clock, error=ConnectTimeout())
    assert breaker.state == "open" and seen == [("closed", "open")]
    shed = call_with(breaker, clock)
    assert isinstance(shed.error, CircuitOpen) and shed.kind == "shed:circuit-open" and breaker.rejected == 1
    clock.advance(1.9)
    assert breaker.state == "open"
    clock.advance(0.1)
    assert breaker.state == "closed" and seen == [("closed", "open"), ("open", "closed")]
    assert call_with(breaker, clock).ok


def test_recent_error_delay_counts_from_the_last_error():
    clock = SteppedClock()
    breaker, seen = bound(clock, mode="recent-error", recent_error_delay=2.0)
    wire = HeldCalls(clock)
    launched_earlier = run(breaker, make_call(clock), wire)
    call_with(breaker, clock, error=FAIL)
    clock.advance(1.0)
    wire.release(error=FAIL)  # a failure that lands while already open
    assert launched_earlier.value.kind == "503" and breaker.state == "open"
    clock.advance(1.5)  # 2.5 s after the first failure, 1.5 s after the last
    assert breaker.state == "open"
    clock.advance(0.5)
    assert breaker.state == "closed" and seen == [("closed", "open"), ("open", "closed")]


@pytest.mark.parametrize(
    ("error", "opens"),
    [
        (ConnectTimeout(), True),
        (ReadTimeout(), True),
        (ServiceUnavailable(), True),
        (HttpServerError("500"), True),
        (HttpClientError("404"), False),
        (TooManyRequests(), True),
        (TooManyRequests(overload=False), False),
        (ThrottleRejected(), False),
        (ClientError(), False),
        (None, False),
    ],
)
def test_what_counts_as_a_server_failure(error, opens):
    clock = SteppedClock()
    breaker, _ = bound(clock, mode="recent-error")
    call_with(breaker, clock, error=error)
    assert (breaker.state == "open") is opens


# -- rate mode: window maths ------------------------------------------------------------------------------


def test_count_window_waits_for_minimum_calls_then_opens_at_the_threshold():
    clock = SteppedClock()
    breaker, seen = rate(clock, failure_rate_threshold=50)
    for error in (None, None, None, FAIL):  # 25 % over 4 calls
        call_with(breaker, clock, error=error)
    assert breaker.state == "closed" and breaker.failure_rate == 25.0
    call_with(breaker, clock, error=FAIL)  # oldest success slides out: [ok ok F F] = 50 %
    assert breaker.state == "open" and seen == [("closed", "open")]
    assert breaker.window.calls == 4 and breaker.window.failures == 2


def test_below_minimum_calls_even_all_failures_keep_it_closed():
    clock = SteppedClock()
    breaker, _ = rate(clock, window_size=10, minimum_calls=5)
    for _ in range(4):
        call_with(breaker, clock, error=FAIL)
    assert breaker.state == "closed" and breaker.failure_rate is None
    call_with(breaker, clock, error=FAIL)
    assert breaker.state == "open"


def test_time_window_forgets_calls_older_than_its_size():
    clock = SteppedClock()
    breaker, _ = rate(clock, window_type="time", window_size=10.0, minimum_calls=3)
    call_with(breaker, clock, error=FAIL)
    clock.advance(5.0)
    call_with(breaker, clock)
    clock.advance(5.0)  # the first failure is now exactly 10 s old: out of (now - 10, now]
    call_with(breaker, clock, error=FAIL)
    assert breaker.window.calls == 2 and breaker.state == "closed"
    clock.advance(1.0)
    call_with(breaker, clock, error=FAIL)  # ok@5, F@10, F@11: 3 calls, 67 %
    assert breaker.state == "open"


def test_time_window_opens_when_the_failures_are_close_together():
    clock = SteppedClock()
    breaker, _ = rate(clock, window_type="time", window_size=10.0, minimum_calls=3)
    for error, gap in ((FAIL, 5.0), (None, 4.9), (FAIL, 0.0)):
        call_with(breaker, clock, error=error)
        clock.advance(gap)
    assert breaker.state == "open"


def test_slow_calls_open_the_breaker_even_when_they_succeed():
    clock = SteppedClock()
    breaker, _ = rate(
        clock, window_size=2, minimum_calls=2, slow_call_duration=1.0, slow_call_rate_threshold=50
    )
    call_with(breaker, clock, takes=0.5)
    call_with(breaker, clock, takes=0.9)
    assert breaker.state == "closed" and breaker.slow_call_rate == 0.0
    call_with(breaker, clock, takes=1.5)
    assert breaker.state == "open" and breaker.window.failures == 0 and breaker.window.slow == 1


def test_slow_calls_are_ignored_when_slow_call_duration_is_none():
    clock = SteppedClock()
    breaker, _ = rate(clock, window_size=2, minimum_calls=2, slow_call_duration=None)
    for _ in range(3):
        call_with(breaker, clock, takes=100.0)
    assert breaker.state == "closed"


def test_4xx_and_inner_sheds_do_not_count_against_the_server():
    clock = SteppedClock()
    breaker, _ = rate(clock)
    for _ in range(4):
        call_with(breaker, clock, error=HttpClientError("404"))
    assert breaker.state == "closed" and breaker.failure_rate == 0.0
    for _ in range(10):
        call_with(breaker, clock, error=ThrottleRejected())
    assert breaker.window.calls == 4


# -- rate mode: open, half-open, probes --------------------------------------------------------------------


def trip(breaker, clock):
    for _ in range(4):
        call_with(breaker, clock, error=FAIL)
    assert breaker.state == "open"


def test_open_sheds_until_open_duration_then_half_opens_lazily():
    clock = SteppedClock()
    breaker, seen = rate(clock)
    trip(breaker, clock)
    opened = clock.now()
    wire = HeldCalls(clock)
    clock.advance(4.9)
    assert run(breaker, make_call(clock), wire).value.kind == "shed:circuit-open"
    assert breaker.state == "open" and wire.order == [] and breaker.rejected == 1
    clock.advance(0.1)
    assert breaker.state == "half-open"
    expected = [("closed", "open"), ("open", "half-open")]
    assert [(t.old, t.new) for t in breaker.recent_transitions] == seen == expected
    assert breaker.recent_transitions[0].at == opened and breaker.recent_transitions[1].at == opened + 5.0


def test_half_open_admits_a_bounded_number_of_probes_then_closes_on_success():
    clock = SteppedClock()
    breaker, seen = rate(clock, permitted_calls_in_half_open=3)
    trip(breaker, clock)
    clock.advance(5.0)
    wire = HeldCalls(clock)
    probes = [run(breaker, make_call(clock, f"/probe{i}"), wire) for i in range(3)]
    extra = run(breaker, make_call(clock, "/extra"), wire)
    assert extra.value.kind == "shed:circuit-open" and wire.inside == 3
    assert breaker.half_open_in_flight == 3
    wire.release(2, error=None)
    assert breaker.state == "half-open"  # waits for every probe
    wire.release(1, error=HttpClientError("404"))
    assert all(p.ready() for p in probes)
    assert breaker.state == "closed" and seen[-1] == ("half-open", "closed")
    assert breaker.window.calls == 0  # a fresh window after closing
    assert breaker.transitions == {
        ("closed", "open"): 1,
        ("open", "half-open"): 1,
        ("half-open", "closed"): 1,
    }


def test_half_open_reopens_when_probes_fail_at_the_threshold():
    clock = SteppedClock()
    breaker, seen = rate(clock, permitted_calls_in_half_open=2, failure_rate_threshold=50)
    trip(breaker, clock)
    clock.advance(5.0)
    call_with(breaker, clock)
    call_with(breaker, clock, error=ReadTimeout())
    assert breaker.state == "open" and seen[-1] == ("half-open", "open")
    clock.advance(4.0)
    assert breaker.state == "open"  # a new full open_duration from the reopening
    clock.advance(1.0)
    assert breaker.state == "half-open"


def test_a_probe_shed_further_in_or_raising_gives_its_slot_back():
    clock = SteppedClock()
    breaker, _ = rate(clock, permitted_calls_in_half_open=1)
    trip(breaker, clock)
    clock.advance(5.0)
    assert call_with(breaker, clock, error=ThrottleRejected()).kind == "shed:throttle"

    def explode(call):
        raise RuntimeError("transport bug")

    with pytest.raises(RuntimeError):
        breaker.execute(make_call(clock), explode)
    assert breaker.state == "half-open" and breaker.half_open_in_flight == 0
    assert call_with(breaker, clock).ok and breaker.state == "closed"


def test_a_killed_probe_gives_its_slot_back():
    clock = SteppedClock()
    breaker, _ = rate(clock, permitted_calls_in_half_open=1)
    trip(breaker, clock)
    clock.advance(5.0)
    wire = HeldCalls(clock)
    run(breaker, make_call(clock), wire).kill()
    assert breaker.half_open_in_flight == 0 and call_with(breaker, clock).ok


def test_outcomes_of_calls_admitted_before_a_transition_are_ignored():
    clock = SteppedClock()
    breaker, _ = rate(clock, permitted_calls_in_half_open=1)
    wire = HeldCalls(clock)
    stale = run(breaker, make_call(clock, "/stale"), wire)  # admitted while closed
    trip(breaker, clock)
    clock.advance(5.0)
    probe = run(breaker, make_call(clock, "/probe"), wire)  # the one half-open probe
    wire.release(1)  # the stale call succeeds: it must not count as the probe
    assert stale.value.ok and breaker.state == "half-open"
    wire.release(1, error=FAIL)
    assert probe.value.kind == "503" and breaker.state == "open"


def test_no_lock_is_held_across_the_call_in_real_time():
    clock = MonotonicClock()
    breaker = CircuitBreaker(CircuitBreakerConfig(mode="rate", window_size=100, minimum_calls=100))
    breaker.bind(clock, PipelineEvents())
    slow = answer(clock, takes=0.05)
    started = time.monotonic()
    greenlets = [gevent.spawn(breaker.execute, make_call(clock), slow) for _ in range(20)]
    gevent.joinall(greenlets, timeout=5)
    assert all(g.value.ok for g in greenlets) and breaker.window.calls == 20
    assert time.monotonic() - started < 0.5  # pybreaker would serialise them: 20 x 0.05 = 1.0 s


# -- a half-open probe is bounded ----------------------------------------------------------------------------


def test_a_probe_that_never_returns_cannot_hold_the_breaker_half_open_forever():
    clock = SteppedClock()
    breaker, seen = rate(clock, permitted_calls_in_half_open=1, half_open_max_wait=3.0)
    trip(breaker, clock)
    clock.advance(5.0)
    hung = HeldCalls(clock)
    stuck = run(breaker, make_call(clock, "/stuck"), hung)  # the one probe; it never comes back
    assert breaker.state == "half-open" and hung.inside == 1
    clock.advance(2.9)
    assert call_with(breaker, clock).kind == "shed:circuit-open" and breaker.state == "half-open"
    clock.advance(0.1)
    assert breaker.state == "open" and seen[-1] == ("half-open", "open")
    clock.advance(5.0)  # a full open_duration again, then a fresh probe is let through
    assert call_with(breaker, clock).ok and breaker.state == "closed"
    hung.release(1, error=FAIL)  # the old probe's late failure belongs to a past state: ignored
    assert stuck.value.kind == "503" and breaker.state == "closed"


def test_the_half_open_wait_defaults_to_five_seconds_and_none_waits_forever():
    assert CircuitBreakerConfig().half_open_max_wait == 5.0
    clock = SteppedClock()
    breaker, _ = rate(clock, permitted_calls_in_half_open=1, half_open_max_wait=None)
    trip(breaker, clock)
    clock.advance(5.0)
    run(breaker, make_call(clock), HeldCalls(clock))
    clock.advance(3600.0)
    assert breaker.state == "half-open"


def test_a_time_window_holds_only_the_calls_it_counts_so_an_idle_breaker_does_not_grow():
    """The window drops calls older than its size as new ones arrive, not only when its numbers are read:
    what it holds is what it counts. The breaker skips the failure maths while that is below the
    minimum, and a breaker nobody reads must still keep a window's worth of calls, no more."""
    clock = SteppedClock()
    breaker, _ = rate(clock, window_type="time", window_size=2.0, minimum_calls=100)
    for _ in range(50):
        call_with(breaker, clock, takes=0.5)  # one call ends every 0.5 s
    assert len(breaker._window) == 4  # (now - 2 s, now]
    assert breaker.window.calls == 4
    breaker, _ = rate(clock, window_type="time", window_size=2.0, minimum_calls=3)
    for _ in range(10):
        call_with(breaker, clock, takes=0.5)
    call_with(breaker, clock, error=FAIL, takes=0.5)
    assert breaker.state == "closed"  # 1 failure of the 4 calls in the window
    call_with(breaker, clock, error=FAIL, takes=0.5)
    assert breaker.state == "open"  # 2 of 4: the 50 % default
