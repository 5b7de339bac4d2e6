"""SreThrottle: the SRE book's rejection probability at known counts, what counts as an accept, local
rejections counting as requests, and the sliding window forgetting old buckets. Fake time, seeded RNG."""

import random

import gevent
import pytest

from mitigations.core import (
    ConnectRefused,
    FakeClock,
    HttpClientError,
    HttpServerError,
    Outcome,
    PipelineEvents,
    QueuedPastDeadline,
    ReadTimeout,
    ServiceUnavailable,
    SreThrottled,
    TooManyRequests,
)
from mitigations.sre_throttle import SlidingCounts, SreThrottle, SreThrottleConfig
from tests.policy_kit import HeldCalls, answer, make_call, run


class NeverReject(random.Random):
    """random() always 0.999...: only p = 1 rejects. Keeps counts exact while filling the window."""

    def random(self) -> float:
        return 1.0 - 1e-12


def bound(config: SreThrottleConfig | None = None, rng: random.Random | None = None):
    clock = FakeClock()
    throttle = SreThrottle(config or SreThrottleConfig(window=10.0), rng=rng or NeverReject())
    events = PipelineEvents()
    throttle.bind(clock, events)
    return throttle, clock, events


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"k": 0.5}, "k"),
        ({"k": float("inf")}, "k"),
        ({"k": "2"}, "k"),
        ({"window": 0}, "window"),
        ({"window": 0.5, "bucket": 1.0}, "window"),
        ({"bucket": -1}, "bucket"),
        ({"window": 1e9, "bucket": 0.001}, "buckets"),
    ],
)
def test_bad_config_fails_at_construction_with_one_line_naming_the_value(kwargs, word):
    with pytest.raises(ValueError, match=word) as caught:
        SreThrottleConfig(**kwargs)
    assert "\n" not in str(caught.value)


def send(throttle: SreThrottle, clock: FakeClock, n: int, status: int = 200, error=None) -> list[Outcome]:
    return [throttle.execute(make_call(clock), answer(clock, status, error)) for _ in range(n)]


def test_a_healthy_backend_is_never_throttled():
    throttle, clock, _ = bound(rng=random.Random(7))
    outcomes = send(throttle, clock, 500)
    assert all(o.ok for o in outcomes)
    assert throttle.requests == 500 and throttle.accepts == 500 and throttle.probability == 0.0


@pytest.mark.parametrize(
    ("accepted", "failed", "expected"),
    [
        (100, 0, 0.0),  # requests = accepts: nothing to shed
        (50, 50, 0.0),  # 100 - 2 * 50 = 0: still at the K = 2 allowance
        (25, 75, (100 - 50) / 101),
        (0, 100, 100 / 101),
        (10, 30, (40 - 20) / 41),
    ],
)
def test_rejection_probability_at_known_counts(accepted, failed, expected):
    throttle, clock, _ = bound()
    send(throttle, clock, accepted)
    send(throttle, clock, failed, 503, ServiceUnavailable())
    assert throttle.requests == accepted + failed and throttle.accepts == accepted
    assert throttle.probability == pytest.approx(expected)


def test_k_sets_how_many_requests_per_accept_may_go_out():
    throttle, clock, _ = bound(SreThrottleConfig(k=1.5, window=10.0))
    send(throttle, clock, 40)
    send(throttle, clock, 60, None, ConnectRefused())
    assert throttle.probability == pytest.approx((100 - 1.5 * 40) / 101)


def test_4xx_is_an_accept_and_server_failures_are_not():
    throttle, clock, _ = bound()
    send(throttle, clock, 1, 404, HttpClientError("404"))
    for error in (ServiceUnavailable(), HttpServerError("500"), ReadTimeout(), ConnectRefused()):
        send(throttle, clock, 1, None, error)
    assert throttle.requests == 5 and throttle.accepts == 1


def test_a_call_that_raises_or_is_killed_is_taken_back_so_a_healthy_backend_is_never_throttled():
    throttle, clock, _ = bound()
    wire = HeldCalls(clock)
    held = [run(throttle, make_call(clock), wire) for _ in range(10)]
    assert throttle.requests == 10 and wire.inside == 10
    gevent.killall(held)  # the test stopped mid-call: no verdict from the backend
    assert wire.inside == 0 and throttle.requests == 0 and throttle.probability == 0.0

    def explode(call):
        raise RuntimeError("transport bug")

    with pytest.raises(RuntimeError):
        throttle.execute(make_call(clock), explode)
    assert throttle.requests == 0 and throttle.accepts == 0
    send(throttle, clock, 5, 200, None)
    assert throttle.requests == throttle.accepts == 5 and throttle.probability == 0.0


def test_a_429_is_not_an_accept_unless_the_transport_was_told_so():
    throttle, clock, _ = bound()
    send(throttle, clock, 2, 429, TooManyRequests())
    send(throttle, clock, 1, 429, TooManyRequests(overload=False))
    assert throttle.requests == 3 and throttle.accepts == 1


def test_a_call_an_inner_policy_shed_is_not_counted():
    throttle, clock, _ = bound()
    send(throttle, clock, 3, None, QueuedPastDeadline())
    assert throttle.requests == 0 and throttle.accepts == 0


def test_rejections_shed_and_count_as_requests():
    throttle, clock, events = bound(rng=random.Random(3))
    shed: list[Outcome] = []
    events.on("shed", shed.append)
    reached: list[object] = []

    def down(call):
        reached.append(call)
        return Outcome(call=call, finished_at=clock.now(), error=ConnectRefused())

    outcomes = [throttle.execute(make_call(clock), down) for _ in range(1000)]
    rejected = [o for o in outcomes if o.shed]
    assert all(isinstance(o.error, SreThrottled) and o.kind == "shed:sre-throttle" for o in rejected)
    assert shed == rejected and throttle.throttled == len(rejected) and throttle.passed == len(reached)
    assert throttle.requests == 1000  # rejected calls count too, so p keeps climbing while it is down
    assert throttle.probability == pytest.approx(1000 / 1001)
    assert len(reached) < 60  # the backend sees a trickle, not 1000 calls


class Scripted(random.Random):
    def __init__(self, values: list[float]) -> None:
        super().__init__(0)
        self.values = values

    def random(self) -> float:
        return self.values.pop(0)


def test_a_call_is_rejected_exactly_when_the_draw_falls_below_the_probability():
    throttle, clock, _ = bound()
    send(throttle, clock, 100)
    send(throttle, clock, 300, 503, ServiceUnavailable())
    assert throttle.probability == pytest.approx(200 / 401)  # about 0.499
    throttle.rng = Scripted([0.45, 0.55, 0.49])
    first, second, third = send(throttle, clock, 3)
    assert first.shed  # 0.45 < 0.499
    assert second.ok  # 0.55 > (401 - 200) / 402 = 0.500
    assert third.shed  # 0.49 < (402 - 202) / 403 = 0.496


def test_the_window_forgets_old_buckets():
    throttle, clock, _ = bound(SreThrottleConfig(window=10.0, bucket=1.0))
    send(throttle, clock, 50, None, ConnectRefused())
    assert throttle.probability == pytest.approx(50 / 51)
    clock.advance(5.0)
    send(throttle, clock, 20)
    assert throttle.requests == 70 and throttle.accepts == 20
    clock.advance(5.0)  # the failures' bucket has slid out; the answers' has not
    assert throttle.requests == 20 and throttle.accepts == 20 and throttle.probability == 0.0
    clock.advance(10.0)
    assert throttle.requests == 0 and throttle.accepts == 0


def test_sliding_counts_survive_a_long_idle_gap_and_stay_consistent():
    counts = SlidingCounts(buckets=4, bucket_seconds=0.5)
    t = 100.0
    for step in range(40):
        counts.add_request(t)
        if step % 3:
            counts.add_accept(t)
        t += 0.25
    assert counts.requests == 8  # 4 buckets of 0.5 s, 2 requests each: the newest 2 s minus at most a bucket
    counts.advance(t + 1000.0)
    assert counts.requests == 0 and counts.accepts == 0
    index = counts.add_request(t + 1000.0)
    counts.remove_request(index, t + 1000.0)
    counts.remove_request(index - 10, t + 1000.0)  # long gone: ignored
    assert counts.requests == 0
