"""Issue 20's knee mode: the update's rules on scripted samples, then the limit against a model server
whose knee is known (tests/knee_model.py): alone, as a fleet of four, and with one instance joining late.
Virtual time only; the far end is the model, the thing under test is the real `Knee`."""

import random

import pytest

from mitigations.adaptive import ALGORITHMS, AdaptiveLimit, Knee, KneeConfig, Sample
from mitigations.core import FakeClock, Outcome, PipelineEvents, ReadTimeout
from tests.knee_model import ModelClient, ModelServer, SoftModelServer, jain, simulate
from tests.policy_kit import make_call
from tests.test_adaptive_slo import ModelServer as OutageServer
from tests.test_adaptive_slo import drive

TUNED = 0.07  # --adaptive-elasticity 7: the target tuned for the lab's server (docs/adaptive-limits.md)


def ok(at: float, rtt: float, in_flight: int = 10) -> Sample:
    return Sample(at=at, rtt=rtt, in_flight=in_flight, dropped=False)


def knee(**kwargs) -> Knee:
    """A knee limiter whose first probe (3 answers at 50 ms) is already done: min RTT 0.05 s."""
    config = KneeConfig(lag_threshold_ms=None, probe_jitter=0.0, probe_samples=3, dither=0.0, **kwargs)
    algorithm = Knee(config, rng=random.Random(1))
    limit = algorithm.update(10.0, ok(0.0, 0.05, 3))
    assert algorithm.probing and limit == 3
    for i in range(3):
        limit = algorithm.update(limit, ok(0.1 + 0.01 * i, 0.05, 3))
    assert algorithm.min_rtt == pytest.approx(0.05) and limit == 10
    return algorithm


def window(algorithm: Knee, limit: float, rtt: float, start: float, in_flight: int = 10) -> float:
    """One 0.27 s window of 10 answers (the window length is not jittered: probe_jitter 0)."""
    for i in range(10):
        limit = algorithm.update(limit, ok(start + 0.03 * i, rtt, in_flight))
    return limit


# -- config and rules ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"tolerance": 0}, "tolerance"),
        ({"headroom": -1}, "headroom"),
        ({"max_gradient": 1.0}, "max_gradient"),
        ({"probe_confirm": 0}, "probe_confirm"),
        ({"probe_limit": 0}, "probe_limit"),
        ({"slo_target": float("inf")}, "slo_target"),
        ({"min_limit": 5, "initial_limit": 4}, "initial_limit"),
    ],
)
def test_a_bad_knee_config_fails_at_construction_with_one_line(kwargs, word):
    with pytest.raises(ValueError, match=f"KneeConfig.{word}") as caught:
        KneeConfig(**kwargs)
    assert "\n" not in str(caught.value)


def test_knee_is_selectable_by_name():
    assert isinstance(ALGORITHMS["knee"](), Knee)


def test_under_the_target_the_limit_grows_and_past_it_lands_on_the_knee_without_headroom():
    algorithm = knee(probe_confirm=100.0)
    limit = window(algorithm, 10.0, 0.05, start=1.0)  # at min RTT: slow start, L * 1.1 + 0.5 sqrt(L)
    assert limit == pytest.approx(10 * 1.1 + 0.5 * 10**0.5)
    # RTT twice min RTT at L: the server's knee is about L / 2; one update goes to 1.1 x that
    limit = window(algorithm, 20.0, 0.10, start=2.0, in_flight=20)
    assert limit == pytest.approx(20 * 0.055 / 0.10)
    limit = window(algorithm, 20.0, 0.05, start=3.0, in_flight=20)  # after the first cut: additive only
    assert limit == pytest.approx(20 + 0.5 * 20**0.5)


def test_a_limit_not_reached_in_the_window_neither_grows_nor_is_kept_past_the_knee():
    algorithm = knee(probe_confirm=100.0)
    assert window(algorithm, 30.0, 0.05, start=1.0, in_flight=12) == 30  # app-limited: hold
    assert window(algorithm, 30.0, 0.11, start=2.0, in_flight=12) == pytest.approx(12 * 0.5)  # cut the used


def test_the_slo_is_a_ceiling_that_cuts_at_once_and_never_a_target():
    algorithm = knee(slo_target=0.2, tolerance=10.0, max_gradient=10.0)  # only the ceiling can act
    limit = window(algorithm, 40.0, 0.3, start=1.0, in_flight=40)
    assert limit == pytest.approx(40 * 0.2 / 0.3)
    relaxed = knee(slo_target=0.2, tolerance=0.1)
    assert window(relaxed, 40.0, 0.1, start=1.0, in_flight=40) < 40  # well under the SLO, still past the knee


def test_a_baseline_that_moved_is_probed_again_soon_and_a_steady_one_after_the_interval():
    algorithm = knee(probe_interval=30.0, probe_confirm=2.0)
    assert window(algorithm, 10.0, 0.05, start=1.0) > 10  # not yet: the first baseline is confirmed at 2 s
    limit = algorithm.update(10.0, ok(2.5, 0.05, 10))
    assert algorithm.probing and limit == 3
    for i in range(3):
        limit = algorithm.update(limit, ok(2.6 + 0.01 * i, 0.05, 3))
    assert not algorithm.probing and algorithm.probes == 2
    assert window(algorithm, limit, 0.05, start=5.0) > limit  # the same baseline: next probe in 30 s
    assert not algorithm.probing


def test_a_failure_does_not_start_a_min_rtt_probe():
    """A failing server has no baseline to measure: a probe begun on a drop pins the limit to 3 until
    enough answers come, which in an outage is not before it ends."""
    algorithm = knee(probe_interval=5.0, probe_confirm=5.0)
    drop = Sample(at=6.0, rtt=1.0, in_flight=10, dropped=True)
    algorithm.update(10.0, drop)
    assert not algorithm.probing
    assert algorithm.update(10.0, ok(6.1, 0.05)) == 3 and algorithm.probing  # the next answer starts it


def test_the_policy_drives_knee_like_any_algorithm():
    clock = FakeClock()
    policy = AdaptiveLimit(Knee(KneeConfig(lag_threshold_ms=None, probe_samples=2)))
    policy.bind(clock, PipelineEvents())

    def proceed(call):
        clock.advance(0.05)
        return Outcome(call=call, finished_at=clock.now(), status=200)

    for _ in range(3):
        assert policy.execute(make_call(clock), proceed).ok
    assert policy.algorithm.min_rtt == pytest.approx(0.05) and policy.limit == 10


@pytest.mark.parametrize("slow", [False, True], ids=["immediate-503s", "timeouts"])
def test_after_an_outage_the_knee_is_back_at_once_and_no_probe_pins_it(slow):
    """A 10 s outage in which the min-RTT probe falls due. Immediate 503s are no samples; timeouts cut
    the limit to its floor and the first answer restores it. Either way the limit must stay near the last
    good one for the 3 s after the server returns: a probe begun in the outage (or on its first answer)
    pinned it to 3 and then restored the floor it had deferred, and one confirmed on the restored
    limit's queue pinned it again 2 s later (the lab's server: recovery in 3-4 s, HammerClient's 0.1-0.3)."""
    clock = FakeClock()
    config = KneeConfig(lag_threshold_ms=None, dither=0.1, probe_interval=8.0, probe_jitter=0.0, max_limit=40)
    policy = AdaptiveLimit(Knee(config, rng=random.Random(1)))
    policy.bind(clock, PipelineEvents())
    server = OutageServer(clock)
    drive(policy, server, clock, 5.0)
    good = policy.limit
    assert good >= 10  # well above the probe's 3
    server.down = True
    if slow:
        server.failure, server.fail_after = (None, ReadTimeout()), 1.0
    drive(policy, server, clock, 10.0, rate=20 if slow else 100)  # the probe is due at about 10 s
    server.down = False
    returned = clock.now()
    limits = []
    while clock.now() < returned + 3.0:
        drive(policy, server, clock, 0.01)
        limits.append(policy.limit)
    assert min(limits) >= 0.8 * good, (good, limits[:5], min(limits))
    assert not policy.algorithm.probing


# -- the model server -----------------------------------------------------------------------------------


def limiter(seed: int, **kwargs) -> Knee:
    return Knee(KneeConfig(lag_threshold_ms=None, **kwargs), rng=random.Random(seed))


@pytest.mark.parametrize(("servers", "service"), [(20, 0.05), (10, 0.1), (40, 0.02)])
def test_one_limit_settles_on_the_knee_of_a_model_server(servers, service):
    """2 x capacity offered, Poisson. The limit's time average over the last 40 s (min-RTT probes
    included) must be within 25 % above the knee, and the goodput at least 90 % of the capacity."""
    server = ModelServer(servers, service)
    client = ModelClient(limiter(1), rate=2 * server.capacity, rng=random.Random(2))
    simulate(server, [client], until=60.0)
    mean = client.mean_limit(20, 60)
    goodput = client.goodput(20, 60)
    assert mean <= 1.25 * server.knee, (mean, server.knee)
    assert goodput >= 0.9 * server.capacity, (goodput, server.capacity)


def fleet(
    servers: int, late: float | None = None, until: float = 60.0
) -> tuple[ModelServer, list[ModelClient]]:
    """Four instances, each offering half the capacity (2 x C in all), floor 1 (docs: at most K / 2N)."""
    server = ModelServer(servers, 0.05)
    clients = [
        ModelClient(
            limiter(10 + i, min_limit=1),
            rate=2 * server.capacity / 4,
            rng=random.Random(100 + i),
            start=late if late is not None and i == 3 else 0.0,
        )
        for i in range(4)
    ]
    simulate(server, clients, until)
    return server, clients


@pytest.mark.parametrize("servers", [20, 40, 80])
def test_a_fleet_of_four_shares_the_knee_fairly_with_no_coordination(servers):
    server, clients = fleet(servers)
    goodputs = [client.goodput(20, 60) for client in clients]
    assert jain(goodputs) >= 0.95, goodputs
    assert sum(goodputs) >= 0.9 * server.capacity, (sum(goodputs), server.capacity)


@pytest.mark.parametrize("servers", [20, 40, 80])
def test_an_instance_joining_late_reaches_its_fair_share_within_5_s(servers):
    """Within 20 % of a fair share: its goodput over one second at least 0.8 x the fleet's / 4."""
    late = 10.0
    _, clients = fleet(servers, late=late, until=late + 6.0)
    joiner = clients[-1]

    def share(start: float) -> float:
        total = sum(client.goodput(start, start + 1.0) for client in clients)
        return joiner.goodput(start, start + 1.0) / (total / 4)

    reached = [start for start in (late + i / 10 for i in range(41)) if share(start) >= 0.8]
    assert reached, [round(share(late + i / 2), 2) for i in range(9)]  # by 5 s after joining


@pytest.mark.parametrize(
    ("capacity", "k", "elasticity"),
    [(90.0, 2.4, 0.1), (45.0, 1.2, 0.1), (200.0, 5.0, 0.1), (90.3, 2.2, TUNED)],
)
def test_one_limit_settles_near_the_knee_of_a_soft_model_server(capacity, k, elasticity):
    """With the throughput check on (`dither`). The lab's target as its client sees it
    (SoftModelServer: the RTT grows from the first call, so a gradient on min RTT alone settled at a
    quarter of this knee, 0.6 x C; k = 2.2 fits the lab's static caps at 2 x C). The knee: where 1 % more
    calls bring `elasticity` % more answers, the limiter's target. The limit's time average over the
    last 40 s must be within 25 % above it and 30 % below it."""
    server = SoftModelServer(capacity, k, elasticity=elasticity)
    algorithm = limiter(1, dither=0.1, elasticity=elasticity)
    client = ModelClient(algorithm, rate=2 * server.capacity, rng=random.Random(2))
    simulate(server, [client], until=60.0)
    mean = client.mean_limit(20, 60)
    assert 0.7 * server.knee <= mean <= 1.25 * server.knee, (mean, server.knee)
    assert client.goodput(20, 60) >= 0.8 * server.capacity


@pytest.mark.parametrize(
    ("capacity", "k", "knee_at", "target"),
    [(90.0, 2.4, 0.1, 0.15), (200.0, 5.0, 0.1, 0.15), (90.3, 2.2, TUNED, TUNED)],
)
def test_a_fleet_told_its_size_shares_a_soft_knee(capacity, k, knee_at, target):
    """Four instances on the soft model, each told the fleet's size: one holding 1/4 of the calls sees
    1/4 of the queue it adds, so untold they read the elasticity too high and held 2.3-3.2 x the knee
    between them. Told, they share it fairly and hold between 0.6 and 1.6 x the knee in all. (The first
    two cases aim at 0.15 and are judged at the knee of 0.1, as measured when they were written; aimed
    at 0.1, the fleet on k = 5 held 0.58 x it.)"""
    server = SoftModelServer(capacity, k, elasticity=knee_at)
    clients = [
        ModelClient(
            limiter(10 + i, min_limit=1, dither=0.1, fleet_size=4, elasticity=target),
            rate=2 * server.capacity / 4,
            rng=random.Random(100 + i),
        )
        for i in range(4)
    ]
    simulate(server, clients, until=60.0)
    goodputs = [client.goodput(20, 60) for client in clients]
    held = sum(client.mean_limit(20, 60) for client in clients)
    assert jain(goodputs) >= 0.95, goodputs
    assert sum(goodputs) >= 0.8 * server.capacity, (sum(goodputs), server.capacity)
    assert 0.6 * server.knee <= held <= 1.6 * server.knee, (held, server.knee)
