"""Any upstream: AdaptiveLimit in SLO mode behind nginx and behind HAProxy with maxconn, which both hide
X-Server-Lag-Ms, so the limit has latency and errors alone. Real processes on loopback, a few seconds of
open-loop load from this process at about 3x the target's capacity."""

from __future__ import annotations

import pytest

from mitigations.adaptive import AdaptiveLimit, Gradient, GradientConfig
from mitigations.core import MonotonicClock, Outcome, Pipeline
from mitigations.timeout import Timeouts
from mitigations.transport import FastTransport, TransportConfig
from tests import proxies
from tests.open_loop import offer

pytestmark = pytest.mark.slow
CLOCK = MonotonicClock()
SLO_TARGET = 0.25  # seconds: the p99 the limit holds answers under


def limited(url: str) -> tuple[AdaptiveLimit, Pipeline, FastTransport]:
    config = GradientConfig(initial_limit=30, slo_target=SLO_TARGET, lag_threshold_ms=None)
    limit = AdaptiveLimit(Gradient(config))
    transport = FastTransport(TransportConfig(url, timeouts=Timeouts(connect=3)), CLOCK)
    return limit, Pipeline([limit], transport, clock=CLOCK, total_timeout=10.0), transport


def check_held_to_the_slo(limit: AdaptiveLimit, outcomes: list[Outcome], rate: float) -> None:
    assert all(o.header("X-Server-Lag-Ms") is None for o in outcomes), "the proxy passed the lag header on"
    assert limit.samples > 100 and limit.limit < 20, f"from 30 the limit must come down, got {limit.limit}"
    last = outcomes[-int(rate * 1.5) :]  # the last 1.5 s of launches
    answered = sorted(o.finished_at - o.call.launched_at for o in last if o.ok)
    assert len(answered) > 20, "the limit still lets traffic through"
    p95 = answered[int(0.95 * (len(answered) - 1))]
    # At the starting limit of 30 answers take 0.7-1.0 s; held to a 250 ms p99 target, about 0.3 s.
    assert p95 < 2.2 * SLO_TARGET, f"p95 {p95:.3f} s: the latency target does not hold"
    assert sum(o.is_server_failure for o in last) <= 2, [o.kind for o in last if o.is_server_failure]


def test_behind_nginx_without_the_lag_header(start_target, tmp_path):
    server = start_target(sync_work_ms=20)  # about 45 answers/s
    with proxies.nginx(server.url, tmp_path / "nginx") as url:
        limit, pipeline, transport = limited(url)
        outcomes = offer(pipeline, rate=130, seconds=7, join_s=15)
        transport.close()
    check_held_to_the_slo(limit, outcomes, 130)


def test_behind_haproxy_with_maxconn(start_target, tmp_path):
    server = start_target(sync_work_ms=20)
    with proxies.haproxy(server.port, tmp_path / "haproxy", maxconn=4) as url:
        limit, pipeline, transport = limited(url)
        outcomes = offer(pipeline, rate=130, seconds=7, join_s=15)
        transport.close()
    check_held_to_the_slo(limit, outcomes, 130)
