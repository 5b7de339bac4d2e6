"""Issue 13's rules for AdaptiveLimit, with an injected clock: the SLO as the target (a windowed p99, not
a mean), Vegas's queue estimate, no lag header needed, failures that cost the server nothing, and the
limit back within 1 s of an outage's end. The far end is a model server driven by fake time."""

import math

import pytest

from mitigations.adaptive import (
    AdaptiveLimit,
    Aimd,
    AimdConfig,
    Gradient,
    GradientConfig,
    Sample,
    Vegas,
    VegasConfig,
)
from mitigations.adaptive_base import OutageMemory, WindowedPercentile, is_free_failure
from mitigations.core import (
    Call,
    ConnectRefused,
    ConnectTimeout,
    FakeClock,
    Outcome,
    PipelineEvents,
    ReadTimeout,
    ServiceUnavailable,
)


def ok(at: float, rtt: float, in_flight: int = 20) -> Sample:
    return Sample(at=at, rtt=rtt, in_flight=in_flight, dropped=False)


def slo_gradient(target: float = 0.5, **kwargs) -> Gradient:
    return Gradient(GradientConfig(slo_target=target, lag_threshold_ms=None, **kwargs))


def feed(algorithm, limit: float, rtts, start: float, spacing: float = 0.01, in_flight: int = 20):
    t = start
    for rtt in rtts:
        t += spacing
        limit = algorithm.update(limit, ok(t, rtt, in_flight))
    return limit, t


# -- the windowed percentile ----------------------------------------------------------------------------


def test_the_windowed_percentile_is_the_tail_of_the_last_span_only():
    tail = WindowedPercentile(span=1.0, quantile=0.99, min_samples=5)
    for i in range(4):
        tail.add(10.0 + i * 0.1, 0.04)
    assert tail.value(10.3) is None  # too few answers to say
    tail.add(10.4, 0.9)
    assert tail.value(10.4) == 0.9
    for i in range(10):
        tail.add(11.5 + i * 0.01, 0.05)
    assert tail.value(11.6) == 0.05  # the slow answer left the window


# -- SLO mode -------------------------------------------------------------------------------------------


def test_slo_mode_grows_with_headroom_under_the_target():
    gradient = slo_gradient()
    limit, _ = feed(gradient, 10.0, [0.1] * 100, start=0.0)  # p99 100 ms, target 500 ms
    expected = 10.0
    for _ in range(3):  # three windows of 0.25 s closed: each adds the smoothed sqrt(L) headroom
        expected += 0.2 * math.sqrt(expected)
    assert limit == pytest.approx(expected)
    assert gradient.min_rtt is None and not gradient.probing  # no min-RTT probe pins it low


def test_slo_mode_shrinks_as_the_p99_heads_past_the_target_in_proportion():
    gradient = slo_gradient()
    limit, t = feed(gradient, 40.0, [1.0] * 30, start=0.0)  # p99 1 s: twice the target
    assert limit == pytest.approx(40 * 0.5)  # one window closed: cut in proportion at once
    # The answers still arriving were sent before the cut: they do not cut again (one cut per round trip).
    limit, t = feed(gradient, limit, [1.0] * 90, start=t)
    assert limit == pytest.approx(20)
    # Answers sent after the cut that are still too slow cut again.
    limit, _ = feed(gradient, limit, [1.0] * 40, start=t)
    assert limit == pytest.approx(10)


def test_slo_mode_reads_the_tail_where_a_mean_would_say_healthy():
    """Two slow answers in 100: the mean is 58 ms (under the old 1.5 x min-RTT target of a 40 ms
    server), the p99 is 1 s, past a 500 ms target. The SLO rule must shrink; the mean rule grows."""
    rtts = ([0.04] * 49 + [1.0]) * 2
    slo = slo_gradient()
    slo_limit, _ = feed(slo, 20.0, rtts, start=0.0)
    assert slo_limit < 20
    mean_rule = Gradient(GradientConfig(lag_threshold_ms=None, probe_samples=3, probe_jitter=0.0))
    limit, t = feed(mean_rule, 20.0, [0.04] * 4, start=0.0, spacing=0.05, in_flight=3)  # min-RTT probe
    assert mean_rule.min_rtt == pytest.approx(0.04) and limit == 20
    mean_limit, _ = feed(mean_rule, limit, rtts, start=t)
    assert mean_limit >= 20


def test_slo_mode_settles_where_the_p99_meets_the_target_in_a_model_server():
    """A server doing 10 ms of serial work per call, no lag header: RTT = 10 ms x in flight. The limit
    must settle with the p99 near the 500 ms target (50 in flight), neither at the floor nor the max."""
    gradient = slo_gradient(target=0.5)
    limit, t, trace = 10.0, 0.0, []
    for _ in range(20_000):
        t += 0.01
        concurrency = int(limit)
        limit = gradient.update(limit, ok(t, max(0.03, 0.01 * concurrency), concurrency))
        trace.append(limit)
    settled = trace[10_000:]
    assert min(settled) >= 40 and max(settled) <= 60, (min(settled), max(settled))


def test_aimd_counts_an_answer_slower_than_the_slo_target_as_a_drop():
    aimd = Aimd(AimdConfig(slo_target=0.5, once_per_rtt=False, lag_threshold_ms=None))
    assert aimd.update(20, ok(1.0, 0.6)) == 18
    assert aimd.update(20, ok(1.1, 0.4)) == 21


# -- Vegas ----------------------------------------------------------------------------------------------


def vegas(**kwargs) -> Vegas:
    return Vegas(VegasConfig(lag_threshold_ms=None, window=0.1, min_window_samples=5, **kwargs))


def test_vegas_grows_fast_on_an_empty_queue_and_holds_between_alpha_and_beta():
    v = vegas()
    limit, t = feed(v, 10.0, [0.03] * 12, start=0.0, spacing=0.01)  # queue 0 <= log10(10) = 1
    assert v.rtt_noload == pytest.approx(0.03) and limit == 16  # + 6 * log10 L
    # At L = 16 answers of 50 ms: queue = ceil(16 * (1 - 30/50)) = 7 > beta = 6: shrink by 1.
    limit, t = feed(v, limit, [0.05] * 12, start=t)
    assert v.queue == 7 and limit == 15
    # At 15 answers of 38 ms: queue = ceil(15 * 0.21) = 4, between alpha 3 and beta 6: hold.
    limit, t = feed(v, limit, [0.038] * 12, start=t)
    assert v.queue == 4 and limit == 15


def test_vegas_shrinks_on_a_tail_past_the_slo_target():
    v = vegas(slo_target=0.2)
    limit, _ = feed(v, 20.0, [0.03] * 3 + [0.5] * 9, start=0.0)
    assert limit == 19  # the p99 is 500 ms, past 200 ms, though the mean queue alone says grow


# -- what counts as congestion --------------------------------------------------------------------------


def outcome(status=None, error=None) -> Outcome:
    return Outcome(call=Call("GET", "/doWork", launched_at=0.0), finished_at=0.0, status=status, error=error)


def test_free_failures_are_refused_connects_and_errors_answered_before_any_work():
    assert is_free_failure(outcome(error=ConnectRefused()), 0.5, 0.03)
    assert is_free_failure(outcome(503, ServiceUnavailable()), 0.002, 0.03)
    assert not is_free_failure(outcome(503, ServiceUnavailable()), 0.02, 0.03)  # slower: work was done
    assert is_free_failure(outcome(503, ServiceUnavailable()), 0.5, None)  # nothing answered yet
    assert not is_free_failure(outcome(error=ConnectTimeout()), 0.001, 0.03)  # a full accept queue
    assert not is_free_failure(outcome(error=ReadTimeout()), 1.0, None)


def test_outage_memory_restores_only_after_a_period_with_no_answer():
    memory = OutageMemory(outage_after=1.0)
    assert memory.answered(0.0, 12.0) is None
    memory.failed(0.5)
    assert memory.answered(0.9, 4.0) is None  # overload: answers keep coming, the cut stands
    memory.failed(1.0)
    assert memory.answered(2.5, 3.0) == 4.0  # 1.5 s of failures only: back to the last good limit
    assert memory.restores == 1


# -- the policy: recovery after an outage, on a model server in fake time -----------------------------


class ModelServer:
    """Answers each call after `rtt` seconds of fake time; while `down`, fails it as `failure` after
    `fail_after` seconds. Calls run one after another in fake time, each seeing `in_flight` as admitted."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.down = False
        self.failure: tuple[int | None, Exception] = (503, ServiceUnavailable())
        self.fail_after = 0.001
        self.rtt = 0.04

    def __call__(self, call: Call) -> Outcome:
        if self.down:
            self.clock.advance(self.fail_after)
            status, error = self.failure
            return Outcome(call=call, finished_at=self.clock.now(), status=status, error=error)
        self.clock.advance(self.rtt)
        return Outcome(call=call, finished_at=self.clock.now(), status=200)


def drive(policy: AdaptiveLimit, server: ModelServer, clock: FakeClock, seconds: float, rate: float = 100):
    """Offer `rate` calls/s for `seconds`; each call runs to its end at once, as if `limit` were in use."""
    end = clock.now() + seconds
    while clock.now() < end:
        policy.gate.in_use = policy.limit - 1  # the others of a full limit are on the wire
        policy.execute(Call("GET", "/doWork", launched_at=clock.now()), server)
        policy.gate.in_use = 0
        clock.advance(max(0.0, 1 / rate - (server.fail_after if server.down else server.rtt)))


@pytest.mark.parametrize("algorithm", ["gradient", "vegas", "aimd"])
def test_an_outage_of_immediate_503s_leaves_the_limit_where_it_was(algorithm):
    clock = FakeClock()
    make = {
        "gradient": lambda: Gradient(GradientConfig(slo_target=0.5, lag_threshold_ms=None)),
        "vegas": lambda: Vegas(VegasConfig(lag_threshold_ms=None, slo_target=0.5)),
        "aimd": lambda: Aimd(AimdConfig(lag_threshold_ms=None, slo_target=0.5)),
    }
    policy = AdaptiveLimit(make[algorithm]())
    policy.bind(clock, PipelineEvents())
    server = ModelServer(clock)
    drive(policy, server, clock, 5.0)
    before = policy.limit
    server.down = True
    drive(policy, server, clock, 10.0)
    assert policy.limit == before and policy.drops == 0 and policy.free_failures > 500
    server.down = False
    drive(policy, server, clock, 0.05)
    assert policy.limit >= before  # the first answers after the outage find the old limit


def test_a_slow_failing_outage_is_undone_by_its_first_answer():
    """Read timeouts are congestion and cut the limit to the floor; the first answer after 10 s of
    nothing but failures restores the last good limit at once, well within 1 s of the server's return."""
    clock = FakeClock()
    policy = AdaptiveLimit(Gradient(GradientConfig(slo_target=0.5, lag_threshold_ms=None)))
    policy.bind(clock, PipelineEvents())
    server = ModelServer(clock)
    drive(policy, server, clock, 5.0)
    good = policy.limit
    assert good > 10
    server.down, server.failure, server.fail_after = True, (None, ReadTimeout()), 1.0
    drive(policy, server, clock, 10.0, rate=20)
    assert policy.limit <= good / 2  # cut by the timeouts
    server.down = False
    returned = clock.now()
    drive(policy, server, clock, 0.05)
    assert policy.limit >= good and policy.restores == 1
    assert clock.now() - returned < 1.0
    assert math.isfinite(policy.estimate)
