"""Hedge: fixed and adaptive delay, the budget, the overload stop, no hedge for POST, one hedge at most,
the loser cancelled, and a hedged call counted once. Fake time; the far end is a scripted function."""

from __future__ import annotations

import gevent
import gevent.event
import pytest

from locust_plugin.ledger import CallLedger
from mitigations.core import (
    Call,
    ConnectionReset,
    FakeClock,
    Outcome,
    Pipeline,
    PipelineEvents,
    ServiceUnavailable,
    ThrottleRejected,
)
from mitigations.hedge import Hedge, HedgeConfig, LatencyWindow
from mitigations.retry import RetryBudgetConfig
from mitigations.throttle import Throttle, ThrottleConfig
from tests.policy_kit import SteppedClock, make_call

NO_PAUSE = 0.0


class FarEnd:
    """A far end whose first copies stay on the wire until cancelled (or released) and whose hedges
    answer at once. Records every copy it saw, and every copy cancelled while inside."""

    def __init__(
        self, clock: FakeClock, hedge_error=None, primary_takes: float | None = None, primary_waits=0.0
    ) -> None:
        self.clock = clock
        self.primary_waits = primary_waits  # with a SteppedClock: answer once the test moved time on
        self.seen: list[Call] = []
        self.cancelled: list[Call] = []
        self.hedge_error = hedge_error
        self.primary_takes = primary_takes  # answer after this much fake time instead of hanging
        self.release = gevent.event.Event()
        self.primary_error = None

    def __call__(self, call: Call) -> Outcome:
        self.seen.append(call)
        if call.hedge:
            error = self.hedge_error
            return Outcome(call, self.clock.now(), status=None if error else 200, error=error)
        if self.primary_takes is not None:
            self.clock.sleep(self.primary_takes)
            return Outcome(call, self.clock.now(), status=200)
        try:
            if self.primary_waits:
                self.clock.wait(gevent.event.Event(), self.primary_waits)
            else:
                self.release.wait()
        except gevent.GreenletExit:
            self.cancelled.append(call)
            raise
        error = self.primary_error
        return Outcome(call, self.clock.now(), status=None if error else 200, error=error)


def hedge(clock: FakeClock, events: PipelineEvents | None = None, **config) -> Hedge:
    policy = Hedge(HedgeConfig(**config))
    policy.bind(clock, events or PipelineEvents())
    return policy


def test_a_fixed_delay_sends_one_hedge_after_it_and_cancels_the_primary():
    clock = FakeClock()
    far = FarEnd(clock)
    policy = hedge(clock, delay=0.05, budget=None)
    start = clock.now()
    outcome = policy.execute(make_call(clock), far)
    assert outcome.ok and outcome.call.hedge
    assert [c.hedge for c in far.seen] == [False, True]
    assert outcome.finished_at == pytest.approx(start + 0.05)  # sent when the delay ran out
    assert far.cancelled == [far.seen[0]]  # the loser's greenlet was killed inside the far end
    assert (policy.calls, policy.hedged, policy.hedge_won) == (1, 1, 1)
    assert policy.gauges(0.0) == {"hedged": 1, "hedge_won": 1}


def test_an_answer_within_the_delay_is_never_hedged():
    clock = FakeClock()
    far = FarEnd(clock, primary_takes=0.01)
    policy = hedge(clock, delay=0.05, budget=None)
    outcome = policy.execute(make_call(clock), far)
    assert outcome.ok and not outcome.call.hedge
    assert len(far.seen) == 1 and policy.hedged == 0


def test_the_adaptive_delay_is_the_chosen_percentile_of_recent_latency():
    clock = FakeClock()
    policy = hedge(clock, percentile=90.0, budget=None, min_samples=20, window=100)
    for ms in range(1, 101):  # 1..100 ms, each answered before any delay could run out
        assert policy.delay() is None or policy.delay() >= 0.001
        policy.execute(make_call(clock), FarEnd(clock, primary_takes=ms / 1000))
    assert policy.hedged == 0  # each answered within the p90 of what came before it
    assert policy.delay() == pytest.approx(0.090)
    far = FarEnd(clock)
    start = clock.now()
    outcome = policy.execute(make_call(clock), far)
    assert outcome.finished_at == pytest.approx(start + 0.090)
    policy95 = hedge(clock, budget=None, min_samples=20, window=100)
    for ms in range(1, 101):
        policy95.execute(make_call(clock), FarEnd(clock, primary_takes=ms / 1000))
    assert policy95.delay() == pytest.approx(0.095)  # p95 by default


def test_no_hedge_before_the_adaptive_delay_has_enough_latencies():
    clock = FakeClock()
    far = FarEnd(clock)
    far.release.set()  # nobody could hedge: let the primary answer
    policy = hedge(clock, budget=None, min_samples=20)
    policy.execute(make_call(clock), far)
    assert policy.delay() is None and policy.hedged == 0


def test_the_window_is_bounded():
    window = LatencyWindow(10, 3)
    for value in range(100):
        window.add(float(value))
    assert len(window) == 10 and window.percentile(100.0) == 99.0 and window.percentile(1.0) == 90.0


def test_the_budget_keeps_hedges_at_its_share_of_calls():
    clock = SteppedClock()
    policy = hedge(clock, delay=0.05, budget=RetryBudgetConfig(ratio=0.05), pause=NO_PAUSE)
    far = FarEnd(clock, primary_waits=0.5)
    for _ in range(200):
        greenlet = gevent.spawn(policy.execute, make_call(clock), far)
        gevent.idle()
        clock.advance(0.05)  # the delay runs out: a hedge if there is a token
        clock.advance(0.5)  # else the primary answers
        assert greenlet.get().ok
    assert policy.hedged == 10  # 5 % of 200, and no more: the bucket starts empty
    assert policy.budget_denials == 190
    assert policy.amplification == pytest.approx(1.05)


def test_without_a_budget_every_slow_call_is_hedged():
    clock = FakeClock()
    policy = Hedge(HedgeConfig.naive(delay=0.05))
    policy.bind(clock, PipelineEvents())
    for _ in range(50):
        policy.execute(make_call(clock), FarEnd(clock))
    assert policy.hedged == 50 and policy.amplification == 2.0


@pytest.mark.parametrize(
    "signal",
    ["503", "429-shed", "throttle-shed", "limit-falls"],
)
def test_overload_stops_hedging_for_the_pause(signal):
    clock = FakeClock()
    events = PipelineEvents()
    policy = hedge(clock, events, delay=0.05, budget=None, pause=2.0)
    if signal == "503":
        events.emit("wire", Outcome(make_call(clock), clock.now(), status=503, error=ServiceUnavailable()))
    elif signal == "429-shed" or signal == "throttle-shed":
        events.emit("shed", Outcome(make_call(clock), clock.now(), error=ThrottleRejected()))
    else:
        events.emit("limit", object(), 20)
        events.emit("limit", object(), 19)  # a small dip: not overload
        assert not policy.paused()
        events.emit("limit", object(), 17)  # 15 % under its high
    assert policy.paused()
    released = FarEnd(clock, primary_takes=0.5)  # slow, but paused: nobody hedges
    policy.execute(make_call(clock), released)
    assert policy.hedged == 0 and len(released.seen) == 1
    clock.advance(2.0)
    assert not policy.paused()
    policy.execute(make_call(clock), FarEnd(clock))
    assert policy.hedged == 1


def test_a_latency_jump_stops_hedging():
    clock = FakeClock()
    policy = hedge(clock, delay=1.0, budget=None, pause=2.0, jump_window=5, min_samples=10, window=100)
    for _ in range(50):
        policy.execute(make_call(clock), FarEnd(clock, primary_takes=0.01))
    assert not policy.paused()
    for _ in range(3):  # the median of the last five is now 0.1 s, ten times the window's
        policy.execute(make_call(clock), FarEnd(clock, primary_takes=0.1))
    assert policy.paused() and policy.overloads >= 1


def test_a_pause_of_zero_never_stops_hedging():
    clock = FakeClock()
    events = PipelineEvents()
    policy = hedge(clock, events, delay=0.05, budget=None, pause=0.0)
    events.emit("wire", Outcome(make_call(clock), clock.now(), status=503, error=ServiceUnavailable()))
    policy.execute(make_call(clock), FarEnd(clock))
    assert policy.hedged == 1


@pytest.mark.parametrize("method", ["POST", "PATCH", "post"])
def test_never_a_hedge_for_a_non_idempotent_method(method):
    clock = FakeClock()
    far = FarEnd(clock)
    policy = hedge(clock, delay=0.05, budget=None)
    greenlet = gevent.spawn(policy.execute, Call(method, "/doWork", launched_at=clock.now()), far)
    gevent.idle()
    clock.advance(10.0)
    gevent.idle()
    assert len(far.seen) == 1 and not greenlet.ready()
    far.release.set()
    assert greenlet.get().ok
    assert policy.hedged == 0 and policy.unsafe == 1


def test_at_most_one_hedge_and_never_for_a_retry():
    clock = FakeClock()
    far = FarEnd(clock, hedge_error=ConnectionReset())  # the hedge fails: the primary is awaited
    policy = hedge(clock, delay=0.05, budget=None)
    greenlet = gevent.spawn(policy.execute, make_call(clock), far)
    gevent.idle()
    for _ in range(5):
        clock.advance(1.0)
        gevent.idle()
    assert [c.hedge for c in far.seen] == [False, True]  # whatever time passes: one hedge
    far.release.set()
    outcome = greenlet.get()
    assert outcome.ok and not outcome.call.hedge and policy.hedge_won == 0
    retry = make_call(clock)
    retry.attempt = 2
    far2 = FarEnd(clock, primary_takes=1.0)
    policy.execute(retry, far2)
    assert len(far2.seen) == 1 and policy.calls == 1  # a retry is neither hedged nor a new call


def test_when_both_copies_fail_the_last_to_end_is_returned():
    clock = FakeClock()
    far = FarEnd(clock, hedge_error=ServiceUnavailable())
    far.primary_error = ConnectionReset()
    policy = hedge(clock, delay=0.05, budget=None, pause=NO_PAUSE)
    greenlet = gevent.spawn(policy.execute, make_call(clock), far)
    gevent.idle()
    clock.advance(0.05)
    gevent.idle()
    clock.advance(0.2)
    far.release.set()
    outcome = greenlet.get()
    assert outcome.kind == "reset" and not outcome.call.hedge


def test_a_copy_that_failed_on_the_wire_outranks_a_later_shed_copy():
    """Seam hedge x limiters (found by tests/test_ledger_seams.py): the primary failed on the server,
    then its hedge was shed. The call reached the server, so it is that server failure, not a shed
    (the rule retries follow), and it ends when the caller stopped waiting: when the shed copy ended."""
    clock = FakeClock()
    far = FarEnd(clock)
    far.primary_error = ServiceUnavailable()
    shed_at: list[float] = []

    def hedge_shed_after_primary(call: Call) -> Outcome:
        if not call.hedge:
            return far(call)
        far.release.set()  # the primary fails while the hedge waits for a slot ...
        gevent.idle()
        clock.advance(0.1)
        shed_at.append(clock.now())
        return Outcome(call, clock.now(), error=ThrottleRejected())  # ... and then the hedge is shed

    policy = hedge(clock, delay=0.05, budget=None, pause=NO_PAUSE)
    greenlet = gevent.spawn(policy.execute, make_call(clock), hedge_shed_after_primary)
    gevent.idle()
    clock.advance(0.05)
    outcome = greenlet.get()
    assert outcome.kind == "503" and not outcome.call.hedge
    assert outcome.finished_at == shed_at[0]  # when the last copy ended
    assert policy.hedge_won == 0


def test_no_hedge_once_the_call_may_no_longer_be_sent():
    clock = FakeClock()
    policy = hedge(clock, delay=0.05, budget=None)
    call = make_call(clock, deadline_in=0.08)
    call.send_by = clock.now() + 0.04  # past by the time the delay runs out
    far = FarEnd(clock)
    greenlet = gevent.spawn(policy.execute, call, far)
    gevent.idle()
    assert len(far.seen) == 1
    far.release.set()
    greenlet.get()
    assert policy.hedged == 0


def test_the_hedge_carries_the_calls_deadline():
    clock = FakeClock()
    far = FarEnd(clock)
    policy = hedge(clock, delay=0.05, budget=None)
    call = make_call(clock, deadline_in=2.0)
    policy.execute(call, far)
    assert far.seen[1].deadline == call.deadline and far.seen[1].launched_at == call.launched_at


def test_killing_the_call_cancels_both_copies():
    clock = FakeClock()
    far = FarEnd(clock, hedge_error=ConnectionReset())
    policy = hedge(clock, delay=0.05, budget=None)
    far.hedge_error = None
    held = gevent.event.Event()

    def both_hang(call: Call) -> Outcome:
        far.seen.append(call)
        try:
            held.wait()
        except gevent.GreenletExit:
            far.cancelled.append(call)
            raise
        raise AssertionError("never released")

    greenlet = gevent.spawn(policy.execute, make_call(clock), both_hang)
    gevent.idle()
    assert len(far.seen) == 2
    greenlet.kill(block=True, timeout=1)  # the drain at the end of a test
    assert len(far.cancelled) == 2


def test_the_losers_permits_go_back_and_the_call_is_counted_once():
    clock = FakeClock()
    far = FarEnd(clock)
    wire: list[Outcome] = []
    throttle = Throttle(ThrottleConfig(max_concurrent=4))
    pipeline = Pipeline([Hedge(HedgeConfig(delay=0.05, budget=None)), throttle], _Transport(far), clock=clock)
    pipeline.events.on("wire", wire.append)
    ledger = CallLedger(slo_ms=1000)
    ledger.launch()
    ledger.finish(pipeline.execute(make_call(clock)))
    assert (ledger.launched, ledger.ok, ledger.finished) == (1, 1, 1)
    assert len(wire) == 1 and wire[0].call.hedge  # the cancelled primary never came back
    assert throttle.in_flight == 0


class _Transport:
    def __init__(self, far: FarEnd) -> None:
        self.far = far

    def send(self, call: Call) -> Outcome:
        return self.far(call)


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"delay": 0}, "delay"),
        ({"delay": -1.0}, "delay"),
        ({"percentile": 100}, "percentile"),
        ({"percentile": True}, "percentile"),
        ({"window": 5}, "window"),
        ({"min_samples": 2000}, "min_samples"),
        ({"pause": -1}, "pause"),
        ({"pause": float("nan")}, "pause"),
        ({"jump_factor": 0.5}, "jump_factor"),
        ({"budget": 0.05}, "budget"),
        ({"methods": "GET"}, "methods"),
    ],
)
def test_a_bad_config_is_one_line_naming_the_value(values, words):
    with pytest.raises(ValueError) as caught:
        HedgeConfig(**values)
    message = str(caught.value)
    assert f"HedgeConfig.{words}" in message and "\n" not in message


def test_naive_hedge_client_hedges_with_no_budget_no_pause_and_nothing_under_it():
    """NaiveHedgeClient's pipeline: the hedge options' delay, but no budget and no pause (the storm), and
    no breaker, throttle or socket pool under the hedge to hold load back."""
    from types import SimpleNamespace

    from locust_plugin.pipelines import build_pipeline
    from locustfiles.clients import HedgedClient, NaiveHedgeClient
    from mitigations.core import SYSTEM_CLOCK

    host = "http://127.0.0.1:9"
    parsed = SimpleNamespace(
        hedge_delay_ms="30", hedge_percentile="90", hedge_budget="5", hedge_pause_ms="2000"
    )
    built = build_pipeline(NaiveHedgeClient.mitigations, parsed, host, SYSTEM_CLOCK)
    assert list(built.policies) == ["naive-hedge"]
    config = built.policies["naive-hedge"].config
    assert (config.delay, config.percentile, config.budget, config.pause) == (0.03, 90.0, None, 0.0)
    adaptive = build_pipeline(NaiveHedgeClient.mitigations, None, host, SYSTEM_CLOCK).policies["naive-hedge"]
    assert adaptive.config.delay is None and adaptive.config == HedgeConfig.naive()
    hedged = build_pipeline(HedgedClient.mitigations, parsed, host, SYSTEM_CLOCK).policies["hedge"]
    assert hedged.config.budget is not None and hedged.config.pause == 2.0
