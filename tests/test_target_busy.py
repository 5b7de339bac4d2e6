"""The pure pieces of busy tracking: toobusy's smoothing and odds, the seed's log lines, fault draws."""

from __future__ import annotations

import random

import gevent
import pytest

from target_server.busy import LagSampler, busy_spin, format_status, shed_probability
from target_server.faults import Fault, FaultBook


def test_lag_is_the_late_wake_up_smoothed_by_a_third():
    sampler = LagSampler(interval_ms=500, smoothing=1 / 3)
    assert sampler.record(500) == 0.0  # on time
    assert sampler.record(800) == pytest.approx(100.0)  # 300 late, a third of it
    assert sampler.record(800) == pytest.approx(300 / 3 + 2 * 100 / 3)
    assert sampler.record(400) == pytest.approx(2 / 3 * (300 / 3 + 2 * 100 / 3))  # early counts as 0


def test_lag_falls_back_geometrically_once_the_loop_is_free():
    sampler = LagSampler(interval_ms=500, smoothing=1 / 3)
    sampler.lag_ms = 900.0
    for _ in range(6):
        sampler.record(500)
    assert sampler.lag_ms == pytest.approx(900 * (2 / 3) ** 6)
    assert sampler.lag_ms < 80


def test_shed_probability_is_toobusys():
    assert shed_probability(0, 70) == 0.0
    assert shed_probability(70, 70) == 0.0
    assert shed_probability(105, 70) == pytest.approx(0.5)
    assert shed_probability(140, 70) == 1.0
    assert shed_probability(1000, 70) == 1.0


@pytest.mark.slow
def test_the_sampler_sees_a_blocked_loop():
    wake_ups: list[float] = []

    class Recording(LagSampler):
        def record(self, elapsed_ms: float) -> float:
            wake_ups.append(elapsed_ms)
            return super().record(elapsed_ms)

    sampler = Recording(interval_ms=100, smoothing=1 / 3)
    greenlet = gevent.spawn(sampler.run)
    try:
        gevent.sleep(0.01)
        busy_spin(250)  # the sampler's 100 ms timer fires about 160 ms late
        gevent.sleep(0.02)
        assert wake_ups and wake_ups[0] >= 240
        assert sampler.lag_ms > 0
    finally:
        greenlet.kill()


def test_status_lines_match_the_seed():
    assert format_status(63.4, 3, 28, 14, None) == "lag: 63\n concurrent: 3\n  completed: 28\n    sockets: 14"
    assert format_status(804, 213, 43, 256, 7).splitlines()[-1] == "   rejected: 7"


def test_fault_draws_follow_the_rate():
    book = FaultBook(random.Random(7))
    book.add(Fault("error", rate=0.3), now=0.0)
    hits = sum(book.decide(now=1.0).terminal is not None for _ in range(2000))
    assert 480 < hits < 720


def test_faults_expire_and_an_outage_wins():
    book = FaultBook(random.Random(1))
    slow = book.add(Fault("slow", delay_ms=200, duration_s=10), now=100.0)
    book.add(Fault("outage", duration_s=5), now=100.0)
    assert book.decide(now=101.0).outage is not None
    verdict = book.decide(now=106.0)  # the outage is over, the slow fault is not
    assert verdict.outage is None and verdict.delay_ms == 200.0 and verdict.hit == ("slow",)
    assert book.decide(now=111.0).delay_ms == 0.0
    assert not book.is_active(slow.id, now=111.0)
    assert book.active(now=111.0) == []
