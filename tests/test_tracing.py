"""Tracing a pipeline (`mitigations.tracing`): a span per logical call, a child span per wire attempt
carrying W3C `traceparent`, a span event per mitigation decision, replays in spans of their own; and
nothing at all while tracing is off.

The spans land in the SDK's in-memory exporter (`tests.otel_kit`). Fake time; no server, no sleep.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import gevent
import pytest
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from mitigations import FakeClock, Pipeline, Retry, RetryConfig, Throttle, ThrottleConfig
from mitigations.breaker import CircuitBreaker, CircuitBreakerConfig
from mitigations.core import Call, HammerError, Outcome, ServiceUnavailable
from mitigations.defer import Defer
from mitigations.defer_config import DeferConfig
from mitigations.tracing import CallTracer
from mitigations.transport import classify_status
from tests.otel_kit import install, render, spans_of
from tests.policy_kit import HeldCalls

ROOT = Path(__file__).resolve().parent.parent


class ScriptedTransport:
    """Answers with the next status of its script, and keeps the headers each attempt carried."""

    backend = "scripted"

    def __init__(self, clock: FakeClock, *statuses: int) -> None:
        self.clock = clock
        self.script = list(statuses)
        self.headers: list[dict[str, str]] = []

    def send(self, call: Call) -> Outcome:
        self.headers.append(dict(call.headers))
        status = self.script.pop(0) if self.script else 200
        return Outcome(call=call, finished_at=self.clock.now(), status=status, error=classify_status(status))


@pytest.fixture
def exporter():
    spans, _ = install()
    spans.clear()
    yield spans
    spans.clear()


def traced(pipeline: Pipeline, client: str = "C") -> Pipeline:
    pipeline.trace(CallTracer(client=client, transport=pipeline.transport))
    return pipeline


def send(pipeline: Pipeline, path: str = "/doWork") -> Outcome:
    return pipeline.execute(Call("GET", path, launched_at=pipeline.clock.now(), headers={"X-Mine": "1"}))


def test_a_call_is_a_span_and_each_attempt_a_child_carrying_its_own_traceparent(exporter):
    clock = FakeClock()
    transport = ScriptedTransport(clock, 503, 503, 200)
    pipeline = traced(Pipeline([Retry(RetryConfig.naive(3))], transport, clock=clock), "NaiveRetryClient")
    assert send(pipeline).ok
    spans = spans_of(exporter)
    (call,) = [s for s in spans if s.kind == "INTERNAL"]
    attempts = sorted((s for s in spans if s.kind == "CLIENT"), key=lambda s: s.start_ns)
    assert call.name == "call GET /doWork" and call.parent_id is None
    assert call.attributes["hammerlab.client"] == "NaiveRetryClient"
    assert (call.attributes["hammerlab.attempts"], call.attributes["hammerlab.outcome"]) == (3, "ok")
    assert [a.attributes["hammerlab.attempt"] for a in attempts] == [1, 2, 3]
    assert [a.attributes["hammerlab.retry"] for a in attempts] == [False, True, True]
    assert [a.attributes.get("http.request.resend_count") for a in attempts] == [None, 1, 2]
    assert [a.attributes["hammerlab.outcome"] for a in attempts] == ["503", "503", "ok"]
    assert [a.attributes["http.response.status_code"] for a in attempts] == [503, 503, 200]
    assert {a.attributes["hammerlab.transport"] for a in attempts} == {"scripted"}
    assert not any(a.attributes["hammerlab.replay"] or a.attributes["hammerlab.hedge"] for a in attempts)
    assert all(a.parent_id == call.span_id and a.trace_id == call.trace_id for a in attempts)
    # Each attempt went out with a traceparent naming that attempt's span, and the caller's own header.
    propagator = TraceContextTextMapPropagator()
    for sent, attempt in zip(transport.headers, attempts, strict=True):
        assert sent["X-Mine"] == "1"
        context = propagator.extract(sent)
        remote = trace.get_current_span(context).get_span_context()
        assert (remote.trace_id, remote.span_id) == (attempt.trace_id, attempt.span_id)
    retries = [e for e in call.events if e[0] == "hammerlab.retry"]
    assert [e[1]["hammerlab.attempt"] for e in retries] == [2, 3]
    print(render(spans, call.trace_id))


def test_a_pipeline_without_a_tracer_sends_no_trace_header_and_makes_no_span(exporter):
    clock = FakeClock()
    transport = ScriptedTransport(clock, 503, 200)
    pipeline = Pipeline([Retry(RetryConfig.naive(3))], transport, clock=clock)
    assert send(pipeline).ok
    assert transport.headers == [{"X-Mine": "1"}, {"X-Mine": "1"}]
    assert pipeline.tracer is None and exporter.get_finished_spans() == ()


def test_every_mitigation_decision_is_an_event_on_the_call_span(exporter):
    clock = FakeClock()
    breaker = CircuitBreaker(CircuitBreakerConfig(mode="recent-error", recent_error_delay=2.0))
    pipeline = traced(Pipeline([breaker], ScriptedTransport(clock, 503), clock=clock))
    assert send(pipeline).kind == "503"  # opens the breaker
    assert send(pipeline).kind == "shed:circuit-open"
    first, second = sorted((s for s in spans_of(exporter) if s.kind == "INTERNAL"), key=lambda s: s.start_ns)
    assert ("hammerlab.breaker", {"hammerlab.policy": "breaker", "hammerlab.state.from": "closed",
                                  "hammerlab.state.to": "open"}) in first.events  # fmt: skip
    shed = ("hammerlab.shed", {"hammerlab.shed.cause": "circuit-open", "hammerlab.attempt": 1})
    assert second.events == [shed]
    assert (second.attributes["hammerlab.outcome"], second.attributes["hammerlab.attempts"]) == (
        "shed:circuit-open", 0,
    )  # fmt: skip


def test_a_replay_is_a_span_of_its_own_whose_attempts_say_replay(exporter, tmp_path):
    clock = FakeClock()
    throttle = Throttle(ThrottleConfig(max_concurrent=1))
    defer = Defer(DeferConfig(tmp_path, drain_every=None, priority="deferred"), throttle, client="D")
    held = HeldCalls(clock)

    class Held:
        backend = "held"

        def send(self, call: Call) -> Outcome:
            return held(call)

    pipeline = traced(Pipeline([defer, throttle], Held(), clock=clock), "DeferredClient")
    first = gevent.spawn(send, pipeline, "/a")
    with gevent.Timeout(5):
        while held.inside == 0:
            gevent.idle()  # not sleep(0): Defer opens its store in the hub's thread pool
    assert send(pipeline, "/b").kind == "shed:deferred"
    held.release()
    first.join(timeout=5)
    assert defer.drain_once() == 1
    with gevent.Timeout(5):
        while held.inside == 0:
            gevent.idle()  # not sleep(0): Defer opens its store in the hub's thread pool
    held.release()
    with gevent.Timeout(5):
        while defer.replayed == 0:
            gevent.idle()  # not sleep(0): Defer opens its store in the hub's thread pool
    defer.close()
    spans = spans_of(exporter)
    deferred = next(s for s in spans if s.name == "call GET /b")
    assert deferred.attributes["hammerlab.outcome"] == "shed:deferred"
    assert ("hammerlab.shed", {"hammerlab.shed.cause": "deferred", "hammerlab.attempt": 1}) in deferred.events
    replay = next(s for s in spans if s.name == "replay GET /b")
    assert replay.parent_id is None and replay.attributes["hammerlab.replay"] is True
    (attempt,) = [s for s in spans if s.parent_id == replay.span_id]
    assert attempt.kind == "CLIENT" and attempt.attributes["hammerlab.replay"] is True
    assert attempt.attributes["hammerlab.outcome"] == "ok"


def test_a_call_ended_before_its_answer_is_an_unfinished_span(exporter):
    clock = FakeClock()
    held = HeldCalls(clock)

    class Held:
        def send(self, call: Call) -> Outcome:
            return held(call)

    pipeline = traced(Pipeline([], Held(), clock=clock))
    greenlet = gevent.spawn(send, pipeline)
    gevent.idle()
    greenlet.kill()  # what the end of a test does to a call its drain did not wait for
    (call,) = [s for s in spans_of(exporter) if s.kind == "INTERNAL"]
    assert call.attributes["hammerlab.outcome"] == "unfinished"


def test_a_failed_call_is_an_error_span_naming_its_kind(exporter):
    clock = FakeClock()
    pipeline = traced(Pipeline([], ScriptedTransport(clock, 503), clock=clock))
    outcome = send(pipeline)
    assert isinstance(outcome.error, ServiceUnavailable) and isinstance(outcome.error, HammerError)
    for span in exporter.get_finished_spans():
        assert span.status.status_code.name == "ERROR" and span.attributes["error.type"] == "503"


def test_the_mitigations_work_without_opentelemetry_installed(monkeypatch, caplog):
    """Only mitigations/tracing.py imports OpenTelemetry; without the packages, --otel is one warning
    and the pipeline runs untraced."""
    import locust_plugin.tracing as plugin_tracing

    for package in ("mitigations", "locust_plugin", "target_server"):
        for path in (ROOT / package).glob("*.py"):
            if path.name != "tracing.py":
                assert "opentelemetry" not in path.read_text(), path
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if the extra were not installed
    monkeypatch.delitem(sys.modules, "mitigations.tracing")
    monkeypatch.setattr(plugin_tracing, "_warned", set())
    clock = FakeClock()
    transport = ScriptedTransport(clock, 200)
    pipeline = Pipeline([], transport, clock=clock)
    with caplog.at_level(logging.WARNING, logger="hammerlab"):
        assert plugin_tracing.trace_pipeline(pipeline, "C") is False
    assert "pip install 'hammerlab[otel]'" in caplog.text
    assert send(pipeline).ok and pipeline.tracer is None and transport.headers == [{"X-Mine": "1"}]


def test_a_hedge_is_an_attempt_of_the_same_call_and_the_loser_ends_cancelled(exporter):
    """Hedge races its two copies in greenlets it spawns: both stay under the call's span."""
    from mitigations.hedge import Hedge, HedgeConfig
    from tests.test_hedge import FarEnd

    clock = FakeClock()
    far = FarEnd(clock)

    class Far:
        backend = "far"

        def send(self, call: Call) -> Outcome:
            return far(call)

    pipeline = traced(Pipeline([Hedge(HedgeConfig(delay=0.05, budget=None))], Far(), clock=clock))
    assert send(pipeline).call.hedge
    spans = spans_of(exporter)
    (call,) = [s for s in spans if s.kind == "INTERNAL"]
    assert not [s for s in spans if s.name.startswith("replay")]
    attempts = sorted((s for s in spans if s.parent_id == call.span_id), key=lambda s: s.start_ns)
    assert [(a.attributes["hammerlab.hedge"], a.attributes["hammerlab.outcome"]) for a in attempts] == [
        (False, "cancelled"), (True, "ok"),
    ]  # fmt: skip
    assert call.attributes["hammerlab.attempts"] == 2
    assert [e[0] for e in call.events] == ["hammerlab.hedge"]
