"""Timeouts: validated values, connect/read capped by the time left to the call's deadline, the total
budget counted from launch through Pipeline(total_timeout=...), and timeouts named by what fired."""

import pytest

from mitigations import (
    Call,
    ConnectTimeout,
    DeadlineExceeded,
    FakeClock,
    Outcome,
    Pipeline,
    ReadTimeout,
    Timeouts,
)
from mitigations.timeout import MIN_WIRE_TIMEOUT, timeout_failure


@pytest.mark.parametrize("field", ["connect", "read", "total"])
@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), "5", True])
def test_each_timeout_is_none_or_a_positive_finite_number(field, value):
    with pytest.raises(ValueError, match=f"Timeouts.{field} must be") as caught:
        Timeouts(**{field: value})
    assert "\n" not in str(caught.value)


def test_none_means_no_limit_and_is_the_default():
    timeouts = Timeouts()
    assert (timeouts.connect, timeouts.read, timeouts.total) == (None, None, None)
    assert timeouts.for_call(Call("GET", "/", launched_at=0.0), now=50.0) == (None, None)


def test_configured_values_pass_through_while_the_deadline_is_far():
    call = Call("GET", "/", launched_at=0.0, deadline=10.0)
    assert Timeouts(connect=1.0, read=3.0).for_call(call, now=2.0) == (1.0, 3.0)


def test_the_time_left_caps_each_phase_and_stands_in_for_missing_ones():
    call = Call("GET", "/", launched_at=0.0, deadline=10.0)
    assert Timeouts(connect=1.0, read=3.0).for_call(call, now=8.0) == (1.0, 2.0)
    assert Timeouts(connect=1.0, read=3.0).for_call(call, now=9.5) == (0.5, 0.5)
    assert Timeouts().for_call(call, now=7.5) == (2.5, 2.5)


def test_a_spent_deadline_is_flagged_and_never_yields_a_zero_timeout():
    call = Call("GET", "/", launched_at=0.0, deadline=10.0)
    timeouts = Timeouts(connect=1.0, read=3.0)
    assert not timeouts.expired(call, now=9.99) and timeouts.expired(call, now=10.0)
    assert timeouts.for_call(call, now=12.0) == (MIN_WIRE_TIMEOUT, MIN_WIRE_TIMEOUT)


def test_total_goes_to_the_pipeline_which_counts_it_from_launch():
    clock = FakeClock(start=100.0)
    timeouts = Timeouts(connect=2.0, read=5.0, total=3.0)
    seen = []

    class Recorder:
        def send(self, call: Call) -> Outcome:
            seen.append(timeouts.for_call(call, clock.now()))
            return Outcome(call=call, finished_at=clock.now(), status=200)

    # min_wire_share=0: send with any time left (the share rule is tested in test_blame.py).
    pipeline = Pipeline([], Recorder(), clock=clock, total_timeout=timeouts.total, min_wire_share=0.0)
    call = Call("GET", "/", launched_at=clock.now() - 2.5)  # 2.5 s already spent queued before sending
    pipeline.execute(call)
    assert call.deadline == pytest.approx(100.5) and seen == [(pytest.approx(0.5), pytest.approx(0.5))]


def test_a_timeout_is_named_for_what_fired():
    call = Call("GET", "/", launched_at=0.0, deadline=10.0)
    assert isinstance(timeout_failure(call, 4.0, "connect"), ConnectTimeout)
    assert isinstance(timeout_failure(call, 4.0, "read"), ReadTimeout)
    assert isinstance(timeout_failure(call, 10.0, "read"), DeadlineExceeded)
    assert isinstance(timeout_failure(Call("GET", "/", launched_at=0.0), 1e9, "read"), ReadTimeout)
    with pytest.raises(ValueError, match="phase"):
        timeout_failure(call, 1.0, "write")
