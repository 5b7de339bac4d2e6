"""AdaptiveLimit: AIMD and gradient updates, bounds, the lag-header signal, shedding and queueing at the
limit, and what counts as a sample. Fake time only; the far end is a plain function returning Outcomes."""

import math
import random

import gevent
import pytest

from mitigations.adaptive import (
    ALGORITHMS,
    LAG_HEADER,
    AdaptiveLimit,
    AdaptiveLimitConfig,
    Aimd,
    AimdConfig,
    Gradient,
    GradientConfig,
    Sample,
    parse_lag,
)
from mitigations.core import (
    AdaptiveLimitRejected,
    Call,
    ClientError,
    FakeClock,
    HttpClientError,
    Outcome,
    PipelineEvents,
    QueuedPastDeadline,
    ReadTimeout,
    ServiceUnavailable,
    ThrottleRejected,
    TooManyRequests,
)
from tests.policy_kit import HeldCalls, SteppedClock, make_call, run


def ok(at: float, rtt: float = 0.03, in_flight: int = 10, lag_ms: float | None = None) -> Sample:
    return Sample(at=at, rtt=rtt, in_flight=in_flight, dropped=False, lag_ms=lag_ms)


def drop(at: float, rtt: float = 0.03, in_flight: int = 10) -> Sample:
    return Sample(at=at, rtt=rtt, in_flight=in_flight, dropped=True)


# -- configs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "word"),
    [
        (lambda: AimdConfig(min_limit=0), "min_limit"),
        (lambda: AimdConfig(min_limit=5, max_limit=4, initial_limit=5), "max_limit"),
        (lambda: AimdConfig(initial_limit=500), "initial_limit"),
        (lambda: AimdConfig(initial_limit=2.5), "initial_limit"),
        (lambda: AimdConfig(backoff_ratio=1.0), "backoff_ratio"),
        (lambda: AimdConfig(backoff_ratio="0.9"), "backoff_ratio"),
        (lambda: AimdConfig(rtt_timeout=0), "rtt_timeout"),
        (lambda: AimdConfig(lag_threshold_ms=float("nan")), "lag_threshold_ms"),
        (lambda: GradientConfig(smoothing=0), "smoothing"),
        (lambda: GradientConfig(rtt_tolerance=0.9), "rtt_tolerance"),
        (lambda: GradientConfig(min_gradient=1.0), "min_gradient"),
        (lambda: GradientConfig(window=0), "window"),
        (lambda: GradientConfig(probe_jitter=1.0), "probe_jitter"),
        (lambda: GradientConfig(probe_samples=0), "probe_samples"),
        (lambda: AdaptiveLimitConfig(mode="shed"), "mode"),
        (lambda: AdaptiveLimitConfig(queue_size=0), "queue_size"),
        (lambda: AdaptiveLimitConfig(queue_timeout=-1), "queue_timeout"),
    ],
)
def test_bad_config_fails_at_construction_with_one_line_naming_the_value(make, word):
    with pytest.raises(ValueError, match=word) as caught:
        make()
    assert "\n" not in str(caught.value)


def test_algorithms_are_selectable_by_name():
    assert isinstance(ALGORITHMS["aimd"](), Aimd) and isinstance(ALGORITHMS["gradient"](), Gradient)


# -- AIMD ------------------------------------------------------------------------------------------------


def per_sample(**kwargs) -> Aimd:
    return Aimd(AimdConfig(once_per_rtt=False, **kwargs))


def test_aimd_cuts_multiplicatively_on_a_drop_and_grows_by_one_while_in_use():
    aimd = per_sample(initial_limit=20)
    assert aimd.update(20, drop(1.0)) == 18  # int(20 * 0.9)
    assert aimd.update(18, ok(1.1, in_flight=9)) == 19  # 2 * 9 >= 18: in use
    assert aimd.update(19, ok(1.2, in_flight=9)) == 19  # 2 * 9 < 19: app-limited, no growth
    assert aimd.update(10, drop(1.3)) == 9


def test_aimd_counts_an_rtt_over_the_timeout_as_a_drop():
    aimd = per_sample(rtt_timeout=1.0)
    assert aimd.update(10, ok(5.0, rtt=1.5)) == 9
    assert aimd.update(10, ok(5.1, rtt=0.5)) == 11


def test_aimd_stays_within_its_bounds():
    aimd = per_sample(initial_limit=3, min_limit=2, max_limit=5)
    limit = 3.0
    for i in range(20):
        limit = aimd.update(limit, drop(float(i)))
    assert limit == 2
    for i in range(20):
        limit = aimd.update(limit, ok(100.0 + i, in_flight=int(limit)))
    assert limit == 5


def test_aimd_treats_server_lag_over_the_threshold_as_a_drop():
    aimd = per_sample()
    assert aimd.update(10, ok(1.0, lag_ms=71)) == 9
    assert aimd.update(10, ok(1.1, lag_ms=70)) == 11  # at max_lag the server is still fine
    assert per_sample(lag_threshold_ms=None).update(10, ok(1.2, lag_ms=5000)) == 11


def test_aimd_once_per_rtt_ignores_signals_from_calls_sent_before_the_last_move():
    aimd = Aimd()  # once_per_rtt is the default
    limit = aimd.update(20, drop(at=10.0, rtt=0.5))
    assert limit == 18
    # Answers to calls admitted before 10.0 carry the same congestion: no second cut, no growth.
    assert aimd.update(limit, drop(at=10.1, rtt=0.5)) == 18
    assert aimd.update(limit, ok(at=10.2, rtt=0.5, in_flight=18)) == 18
    # A call admitted after the cut may cut again, or grow the limit once.
    assert aimd.update(limit, drop(at=10.6, rtt=0.5)) == 16
    assert aimd.update(16, ok(at=11.0, rtt=0.3, in_flight=16)) == 17
    assert aimd.update(17, ok(at=11.1, rtt=0.3, in_flight=16)) == 17  # admitted before that growth
    assert aimd.update(17, ok(at=11.5, rtt=0.3, in_flight=16)) == 18


# -- Gradient ---------------------------------------------------------------------------------------------


def quiet_gradient(**kwargs) -> Gradient:
    """A gradient whose min-RTT probe is already done, with min_rtt = 30 ms."""
    config = GradientConfig(probe_jitter=0.0, probe_samples=3, window=0.1, min_window_samples=5, **kwargs)
    gradient = Gradient(config)
    assert gradient.update(10, ok(0.0)) == 3  # first sample: pin to probe_limit and measure min RTT
    assert gradient.probing
    for i, rtt in enumerate((0.03, 0.029, 0.031)):
        limit = gradient.update(3, ok(0.05 + i * 0.01, rtt=rtt, in_flight=3))
    assert not gradient.probing and limit == 10  # the limit from before the probe comes back
    assert gradient.min_rtt == pytest.approx(0.03)
    return gradient


def window_of(gradient: Gradient, limit: float, rtt: float, n: int = 5, **sample) -> float:
    """Feed one full window (n samples over the next 0.1 s); return the limit after it closes."""
    start = gradient.window.start
    assert start is not None
    for i in range(1, n + 1):
        limit = gradient.update(limit, ok(start + 0.1 * i / n + 1e-9, rtt=rtt, **sample))
    return limit


def test_gradient_pins_the_limit_while_it_measures_min_rtt_and_ignores_earlier_calls():
    gradient = Gradient(GradientConfig(probe_jitter=0.0, probe_samples=2))
    assert gradient.update(10, ok(5.0, rtt=0.2)) == 3
    assert gradient.update(3, ok(5.1, rtt=0.9)) == 3  # admitted at 4.2, before the pin: not a probe sample
    assert gradient.update(3, drop(5.2, rtt=0.01)) == 3  # a drop says nothing about no-load RTT
    assert gradient.update(3, ok(5.3, rtt=0.04)) == 3
    assert gradient.update(3, ok(5.4, rtt=0.06)) == 10
    assert gradient.min_rtt == pytest.approx(0.05)


def test_gradient_grows_by_smoothed_sqrt_headroom_when_rtt_is_at_baseline():
    gradient = quiet_gradient()
    limit = window_of(gradient, 10, rtt=0.03)
    # gradient = clamp(0.5, 1, 1.5 * 30 / 30) = 1; new = 10 + sqrt(10); L = 0.8 * 10 + 0.2 * new
    assert limit == pytest.approx(10 + 0.2 * math.sqrt(10))


def test_gradient_shrinks_when_short_rtt_inflates_beyond_the_tolerance():
    gradient = quiet_gradient()
    limit = window_of(gradient, 10, rtt=0.09)
    g = 1.5 * 0.03 / 0.09  # 0.5
    assert limit == pytest.approx(0.8 * 10 + 0.2 * (10 * g + math.sqrt(10)))
    assert limit < 10 and gradient.short_rtt == pytest.approx(0.09)


def test_gradient_does_not_update_before_the_window_closes():
    gradient = quiet_gradient()  # its window opened when the probe ended, at 0.07 s
    for i in range(20):
        assert gradient.update(10, ok(0.08 + i * 0.001, rtt=0.3)) == 10  # within 0.1 s: still open
    assert gradient.update(10, ok(0.171, rtt=0.3)) < 10


def test_gradient_cuts_on_a_drop_without_headroom():
    gradient = quiet_gradient()
    limit = 10.0
    for i in range(4):
        limit = gradient.update(limit, ok(1.0 + 0.02 * i))
    limit = gradient.update(limit, drop(1.1))
    assert limit == pytest.approx(0.8 * 10 + 0.2 * 10 * 0.5)  # 9


def test_gradient_reads_server_lag_as_rtt_inflation_in_proportion():
    gradient = quiet_gradient()
    # Lag 100 ms over a 70 ms threshold: gradient 0.7, no headroom while congested.
    limit = window_of(gradient, 10, rtt=0.03, lag_ms=100)
    assert limit == pytest.approx(0.8 * 10 + 0.2 * 10 * 0.7)
    # Lag at the threshold is not congestion: the limit grows.
    assert window_of(gradient, 10, rtt=0.03, lag_ms=70) > 10
    # Without a threshold the header is ignored.
    blind = quiet_gradient(lag_threshold_ms=None)
    assert window_of(blind, 10, rtt=0.03, lag_ms=5000) > 10


def test_gradient_does_not_grow_an_app_limited_limit():
    gradient = quiet_gradient()
    assert window_of(gradient, 10, rtt=0.03, in_flight=4) == 10


def test_gradient_stays_within_bounds():
    gradient = quiet_gradient(min_limit=2, max_limit=12)
    limit = 10.0
    for _ in range(100):
        limit = window_of(gradient, limit, rtt=0.03, in_flight=12)
    assert limit == 12
    for _ in range(200):
        limit = window_of(gradient, limit, rtt=1.0, lag_ms=1000)
    assert limit == 2


def test_gradient_remeasures_min_rtt_after_the_probe_interval():
    gradient = quiet_gradient()
    limit = window_of(gradient, 10, rtt=0.03)
    assert gradient.update(limit, ok(40.0, rtt=0.06, in_flight=3)) == 3  # 30 s later: probe again
    for i in range(3):
        limit = gradient.update(3, ok(40.1 + 0.01 * i, rtt=0.06, in_flight=3))
    assert gradient.min_rtt == pytest.approx(0.06) and limit > 10


def test_gradient_settles_near_capacity_in_a_model_of_a_saturated_server():
    """A server that does 10 ms of serial work per call: RTT = 10 ms x concurrency (at least 30 ms).
    The limit must fall from 50, then hold at the update's fixed point: busy, with a short queue."""
    config = GradientConfig(initial_limit=50, min_limit=1, probe_jitter=0.0)
    gradient = Gradient(config, rng=random.Random(1))
    limit, t, trace = 50.0, 0.0, []
    for _ in range(6000):
        t += 0.01
        concurrency = int(limit)
        rtt = max(0.03, 0.01 * concurrency)
        limit = gradient.update(limit, ok(t, rtt=rtt, in_flight=concurrency))
        if not gradient.probing:  # a min-RTT probe pins the limit to 3 on purpose
            trace.append(limit)
    settled = trace[3000:]
    # The fixed point: L = L * rtt_tolerance * 0.03 / (0.01 * int(L)) + sqrt(L), about 7.8. Doubling the
    # tolerance moves it to about 13; dropping the sqrt(L) headroom, to about 4.5.
    assert min(settled) >= 7.0 and max(settled) <= 9.0, (min(settled), max(settled))


# -- the policy -------------------------------------------------------------------------------------------


class Recording:
    """An algorithm that records samples and returns a scripted limit: isolates the policy's wiring."""

    name = "recording"

    def __init__(self, initial: float = 2.0, next_limit: float | None = None) -> None:
        self.initial_limit = initial
        self.next_limit = next_limit
        self.samples: list[Sample] = []

    def update(self, limit: float, sample: Sample) -> float:
        self.samples.append(sample)
        return limit if self.next_limit is None else self.next_limit

    def restart(self, now: float) -> None:
        self.restarted = now


def bound(policy: AdaptiveLimit, clock) -> tuple[AdaptiveLimit, PipelineEvents]:
    events = PipelineEvents()
    policy.bind(clock, events)
    return policy, events


def answering(clock, status=200, error=None, takes=0.0, headers=None):
    def proceed(call: Call) -> Outcome:
        clock.sleep(takes)
        return Outcome(call=call, finished_at=clock.now(), status=status, error=error, headers=headers or {})

    return proceed


def test_rtt_counts_from_admission_not_launch_and_carries_the_lag_header():
    clock = FakeClock()
    algorithm = Recording()
    policy, _ = bound(AdaptiveLimit(algorithm), clock)
    call = Call("GET", "/doWork", launched_at=clock.now() - 5.0)  # queued 5 s in outer layers
    policy.execute(call, answering(clock, takes=0.04, headers={LAG_HEADER.lower(): "85.5"}))
    (sample,) = algorithm.samples
    assert sample.rtt == pytest.approx(0.04) and sample.in_flight == 1
    assert sample.lag_ms == 85.5 and not sample.dropped and policy.lag_ms == 85.5


def test_server_failures_are_drops_and_4xx_and_inner_sheds_are_not():
    clock = FakeClock()
    algorithm = Recording(initial=5)
    policy, _ = bound(AdaptiveLimit(algorithm), clock)
    policy.execute(make_call(clock), answering(clock, takes=0.03))  # the fastest answer: 30 ms
    # Failures slower than half of that: the server worked on them before failing.
    policy.execute(make_call(clock), answering(clock, 503, ServiceUnavailable(), takes=0.02))
    policy.execute(make_call(clock), answering(clock, None, ReadTimeout(), takes=1.0))
    policy.execute(make_call(clock), answering(clock, 404, HttpClientError("404")))
    policy.execute(make_call(clock), answering(clock, None, ThrottleRejected()))
    policy.execute(make_call(clock), answering(clock, 429, TooManyRequests(), takes=0.02))
    policy.execute(make_call(clock), answering(clock, None, ClientError()))
    assert [s.dropped for s in algorithm.samples] == [False, True, True, False, True]  # a 429 is overload
    assert policy.samples == 5 and policy.drops == 3 and policy.in_flight == 0


@pytest.mark.parametrize("value", ["", "fast", "nan", "-3", "inf"])
def test_a_garbled_lag_header_is_ignored(value):
    assert parse_lag(value) is None


def test_calls_over_the_limit_are_shed_at_once_in_cancel_mode():
    clock = FakeClock()
    policy, events = bound(AdaptiveLimit(Recording(initial=2)), clock)
    shed: list[Outcome] = []
    events.on("shed", shed.append)
    held = HeldCalls(clock)
    first, second = run(policy, make_call(clock, "/a"), held), run(policy, make_call(clock, "/b"), held)
    outcome = policy.execute(make_call(clock, "/c"), held)
    assert isinstance(outcome.error, AdaptiveLimitRejected) and outcome.kind == "shed:adaptive"
    assert shed == [outcome] and held.order == ["/a", "/b"] and held.peak == 2
    assert policy.in_flight == 2 and policy.rejected == 1 and policy.admitted == 2
    held.release(2)
    assert first.get().ok and second.get().ok and policy.in_flight == 0


def test_the_limit_event_fires_when_the_integer_limit_changes():
    clock = FakeClock()
    algorithm = Recording(initial=4.0, next_limit=4.5)
    policy, events = bound(AdaptiveLimit(algorithm), clock)
    seen: list[tuple[object, int]] = []
    events.on("limit", lambda p, value: seen.append((p, value)))
    policy.execute(make_call(clock), answering(clock))
    assert seen == [] and policy.limit == 4  # 4.0 -> 4.5: same integer limit
    algorithm.next_limit = 3.2
    policy.execute(make_call(clock), answering(clock))
    assert seen == [(policy, 3)] and policy.limit == 3 and policy.gate.limit == 3


def test_aimd_policy_shrinks_on_503_and_grows_back_under_use():
    clock = FakeClock()
    policy, _ = bound(AdaptiveLimit(Aimd(AimdConfig(initial_limit=10, once_per_rtt=False))), clock)
    policy.execute(make_call(clock), answering(clock, takes=0.01))  # 1 in flight of 10: no growth
    assert policy.limit == 10
    for _ in range(3):  # 503s that took as long as a real answer: the server was busy
        policy.execute(make_call(clock), answering(clock, 503, ServiceUnavailable(), takes=0.01))
    assert policy.limit == 7  # 10 -> 9 -> 8 -> 7
    held = HeldCalls(clock)
    greenlets = [run(policy, make_call(clock), held) for _ in range(4)]
    held.release(4)  # admitted with 1, 2, 3, 4 in flight: only 2 * 4 >= 7 shows the limit in use
    assert all(g.get().ok for g in greenlets)
    assert policy.limit == 8


def test_queue_mode_hands_a_freed_slot_to_the_oldest_waiter():
    clock = SteppedClock()
    config = AdaptiveLimitConfig(mode="queue", queue_timeout=1.0)
    policy, _ = bound(AdaptiveLimit(Recording(initial=1), config), clock)
    held = HeldCalls(clock)
    first = run(policy, make_call(clock, "/a"), held)
    second, third = run(policy, make_call(clock, "/b"), held), run(policy, make_call(clock, "/c"), held)
    assert policy.queued == 2 and held.order == ["/a"]
    held.release()
    assert held.order == ["/a", "/b"] and policy.queued == 1
    held.release(2)
    assert [g.get().ok for g in (first, second, third)] == [True, True, True]
    assert held.order == ["/a", "/b", "/c"] and held.peak == 1


def test_queue_mode_sheds_after_the_queue_timeout_or_the_deadline():
    clock = SteppedClock()
    config = AdaptiveLimitConfig(mode="queue", queue_timeout=0.5)
    policy, _ = bound(AdaptiveLimit(Recording(initial=1), config), clock)
    held = HeldCalls(clock)
    holder = run(policy, make_call(clock), held)
    patient = run(policy, make_call(clock, deadline_in=5.0), held)
    hurried = run(policy, make_call(clock, deadline_in=0.2), held)
    clock.advance(0.3)
    assert isinstance(hurried.get().error, QueuedPastDeadline) and policy.expired == 1
    clock.advance(0.3)
    assert isinstance(patient.get().error, AdaptiveLimitRejected) and policy.rejected == 1
    held.release()
    assert holder.get().ok and policy.in_flight == 0 and policy.queued == 0


def test_a_growing_limit_admits_waiters_at_once():
    clock = SteppedClock()
    algorithm = Recording(initial=1, next_limit=3)
    config = AdaptiveLimitConfig(mode="queue", queue_timeout=1.0)
    policy, _ = bound(AdaptiveLimit(algorithm, config), clock)
    held = HeldCalls(clock)
    first = run(policy, make_call(clock, "/a"), held)
    waiting = [run(policy, make_call(clock, p), held) for p in ("/b", "/c")]
    assert policy.queued == 2
    held.release()  # /a answers, the algorithm raises the limit to 3: both waiters go at once
    assert first.get().ok and held.order == ["/a", "/b", "/c"] and policy.queued == 0
    held.release(2)
    assert all(g.get().ok for g in waiting)


def test_the_slot_comes_back_when_the_call_raises_or_is_killed():
    clock = FakeClock()
    policy, _ = bound(AdaptiveLimit(Recording(initial=1)), clock)

    def boom(call):
        raise RuntimeError("transport bug")

    with pytest.raises(RuntimeError):
        policy.execute(make_call(clock), boom)
    assert policy.in_flight == 0
    held = HeldCalls(clock)
    greenlet = run(policy, make_call(clock), held)
    greenlet.kill()
    gevent.idle()
    assert policy.in_flight == 0
