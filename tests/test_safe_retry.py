"""Retries against real sockets: a POST the server may have processed is never sent twice, on either HTTP
client, and a 429 is an overload answer that is retried after its Retry-After. The far end is a raw socket
server (tests/raw_server.py) that ends each exchange exactly as asked."""

from __future__ import annotations

import pytest

from mitigations.breaker import CircuitBreaker, CircuitBreakerConfig
from mitigations.core import Call, MonotonicClock, Pipeline
from mitigations.retry import Retry, RetryConfig
from mitigations.timeout import Timeouts
from mitigations.transport import HTTP_BACKENDS, TransportConfig, make_transport
from tests.raw_server import RawServer

pytestmark = pytest.mark.slow  # each test starts a real server or a subprocess

CLOCK = MonotonicClock()
CONFIGS = {"safe": RetryConfig(budget=None, base=0.0, cap=0.0), "naive": RetryConfig.naive(3)}


def run(backend: str, url: str, method: str, retry: RetryConfig, **transport: object):
    config = TransportConfig(url, timeouts=Timeouts(connect=1, read=1), **transport)  # type: ignore[arg-type]
    client = make_transport(backend, config, CLOCK)
    pipeline = Pipeline([Retry(retry)], client, clock=CLOCK, total_timeout=5.0)
    try:
        body = b'{"order": 1}' if method == "POST" else None
        return pipeline.execute(Call(method, "/orders", launched_at=CLOCK.now(), body=body))
    finally:
        client.close()


@pytest.mark.parametrize("backend", HTTP_BACKENDS)
@pytest.mark.parametrize("retry", CONFIGS, ids=str)
def test_a_post_cut_off_mid_response_is_sent_exactly_once(backend, retry):
    with RawServer("half-then-reset") as server:
        outcome = run(backend, server.url, "POST", CONFIGS[retry])
    assert outcome.kind == "reset-mid-response", outcome
    assert server.methods == ["POST"]


@pytest.mark.parametrize("backend", HTTP_BACKENDS)
@pytest.mark.parametrize("behaviour", ["reset-before-response", "half-then-close"])
def test_a_post_is_not_resent_after_any_reset(backend, behaviour):
    with RawServer(behaviour) as server:
        outcome = run(backend, server.url, "POST", CONFIGS["safe"])
    expected = "reset" if behaviour == "reset-before-response" else "reset-mid-response"
    assert outcome.kind == expected and server.methods == ["POST"]


@pytest.mark.parametrize("backend", HTTP_BACKENDS)
def test_an_idempotent_get_cut_off_mid_response_is_retried(backend):
    with RawServer("half-then-reset") as server:
        outcome = run(backend, server.url, "GET", CONFIGS["safe"])
    assert outcome.kind == "reset-mid-response" and outcome.call.attempt == 3
    assert server.methods == ["GET"] * 3


@pytest.mark.parametrize("backend", HTTP_BACKENDS)
def test_a_429_is_its_own_kind_is_retried_for_a_get_and_counts_as_overload(backend):
    with RawServer("429") as server:
        outcome = run(backend, server.url, "GET", CONFIGS["safe"])
        assert outcome.kind == "429" and outcome.status == 429 and outcome.is_server_failure
        assert server.methods == ["GET"] * 3  # Retry-After: 0, then the next attempt
        assert not run(backend, server.url, "GET", CONFIGS["safe"], count_429=False).is_server_failure


@pytest.mark.parametrize("backend", HTTP_BACKENDS)
def test_a_breaker_opens_on_429s(backend):
    with RawServer("429") as server:
        config = TransportConfig(server.url, timeouts=Timeouts(connect=1, read=1))
        client = make_transport(backend, config, CLOCK)
        breaker = CircuitBreaker(CircuitBreakerConfig(mode="recent-error"))
        pipeline = Pipeline([breaker], client, clock=CLOCK)
        assert pipeline.execute(Call("GET", "/", launched_at=CLOCK.now())).kind == "429"
        client.close()
    assert breaker.state == "open"
