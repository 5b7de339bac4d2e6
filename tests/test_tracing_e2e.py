"""A retry storm, traced from both sides: a NaiveRetryClient in Locust's own runner against a real target
in an outage, the target started with `--otel`.

The client's spans land in the SDK's in-memory exporter (the session's global provider, what Locust's
`--otel` would have set up). The target is a real subprocess, as users run it: it exports over OTLP/HTTP,
configured by the standard variables only, to a collector this test runs on loopback. So the trace
crosses a process boundary through the `traceparent` header alone, and the export path the docs show
(docs/tracing.md) is the one tested.
"""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace

import gevent
import locust
import locust.opentelemetry
import pytest
from locust.env import Environment

from locustfiles.clients import NaiveRetryClient
from tests.otel_kit import OtlpCollector, install, render, spans_of

pytestmark = pytest.mark.slow

OUTAGE = "outage:duration_s=60"


@pytest.fixture
def locust_metrics(monkeypatch):
    """Locust's own `--otel` setup, as `locust --otel` runs it, for its request-event metrics only: the
    session's providers are already set, so its meter is the in-memory reader's. Its listeners are
    removed afterwards, so no other test records into it."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "")
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    install()  # first: the providers Locust's setup finds already set are the ones used
    before = {name: list(getattr(locust.events, name)._handlers) for name in ("request", "init")}
    logging.getLogger("opentelemetry").setLevel(logging.ERROR)  # "overriding the provider is not allowed"
    assert locust.opentelemetry.setup_opentelemetry("locustfiles/clients.py", None)
    yield
    for name, handlers in before.items():
        hook = getattr(locust.events, name)
        for handler in [h for h in hook._handlers if h not in handlers]:
            hook.remove_listener(handler)


def test_a_retry_storm_shows_calls_their_attempts_and_the_servers_spans_under_them(
    start_target, locust_metrics
):
    exporter, reader = install()
    exporter.clear()
    collector = OtlpCollector()
    try:
        server = start_target(fault=[OUTAGE], otel=True, env={
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        })  # fmt: skip
        env = Environment(user_classes=[NaiveRetryClient], host=server.url, events=locust.events)
        env.parsed_options = SimpleNamespace(otel=True, launch_rate="10", retry_attempts="3")
        env.create_local_runner()
        env.runner.start(1, spawn_rate=10)
        gevent.sleep(1.0)
        env.runner.stop()
        env.runner.quit()

        client = spans_of(exporter)
        calls = [s for s in client if s.name == "call GET /doWork"]
        attempts = [s for s in client if s.kind == "CLIENT"]
        assert len(calls) >= 5
        by_call = {c.span_id: [a for a in attempts if a.parent_id == c.span_id] for c in calls}
        assert all(len(children) == 3 for children in by_call.values()), "every call: 3 attempts, all 503"
        for call in calls:
            assert call.attributes["hammerlab.outcome"] == "503"
            assert call.attributes["hammerlab.attempts"] == 3
            children = sorted(by_call[call.span_id], key=lambda a: a.attributes["hammerlab.attempt"])
            assert [a.attributes["hammerlab.retry"] for a in children] == [False, True, True]
            assert {a.attributes["hammerlab.transport"] for a in children} == {"fast"}
            assert {a.trace_id for a in children} == {call.trace_id}

        # The target's spans arrive over OTLP, each under the attempt that carried its traceparent.
        deadline = time.monotonic() + 10
        wanted = {a.span_id for a in attempts}
        while time.monotonic() < deadline and not wanted <= {s.parent_id for s in collector.spans}:
            gevent.sleep(0.1)
        served = [s for s in collector.spans if s.kind == "SERVER"]
        by_attempt = {a.span_id: a for a in attempts}
        assert wanted <= {s.parent_id for s in served}, "every attempt has its server span"
        for span in served:
            attempt = by_attempt.get(span.parent_id)
            if attempt is None:
                continue  # a request the client did not trace (none here, but the sampler is not ours)
            assert span.trace_id == attempt.trace_id
            assert span.name == "GET /doWork"
            assert span.attributes["http.response.status_code"] == 503
            assert (span.attributes["hammerlab.outcome"], span.attributes["hammerlab.fault"]) == (
                "error", "outage",
            )  # fmt: skip
            assert span.attributes["hammerlab.rejected"] is False
            assert span.attributes["hammerlab.cpu_ms"] == 0.0  # an outage answers before any work
            assert span.attributes["hammerlab.queue_ms"] >= 0
            assert attempt.start_ns - 1e6 <= span.start_ns <= span.end_ns <= attempt.end_ns + 1e6  # one clock
    finally:
        collector.stop()

    print("\n" + render([*client, *collector.spans], calls[0].trace_id))

    # Locust's own metric, from the reporter's request events: one series per stats row, no duplicate.
    points = {
        (p.attributes.get("name"), p.attributes.get("error.type")): p.count
        for metric in _metrics(reader, "locust.client.duration")
        for p in metric.data.data_points
    }
    failed = "ServiceUnavailable"
    assert points[("/doWork", failed)] == len(calls) and points[("/doWork [retry]", failed)] == 2 * len(calls)


def _metrics(reader, name):
    data = reader.get_metrics_data()
    return [
        metric
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
    ]


@pytest.mark.parametrize("backend", ["fast", "requests"])
def test_both_transports_put_each_attempts_traceparent_on_the_wire(backend):
    from gevent.pywsgi import WSGIServer

    from mitigations import Call, Pipeline, Retry, RetryConfig
    from mitigations.tracing import CallTracer
    from mitigations.transport import TransportConfig, make_transport

    exporter, _ = install()
    exporter.clear()
    seen: list[str] = []

    def app(environ, start_response):
        seen.append(environ.get("HTTP_TRACEPARENT", "none"))
        status = "503 Service Unavailable" if len(seen) == 1 else "200 OK"
        start_response(status, [("Content-Length", "0")])
        return [b""]

    server = WSGIServer(("127.0.0.1", 0), app, log=None)
    server.start()
    try:
        config = TransportConfig(f"http://127.0.0.1:{server.server_port}", keep_alive=True)
        transport = make_transport(backend, config)
        pipeline = Pipeline([Retry(RetryConfig.naive(2))], transport)
        pipeline.trace(CallTracer(client="C", transport=transport))
        for _ in range(2):
            assert pipeline.execute(Call("GET", "/doWork", launched_at=pipeline.clock.now())).ok
        transport.close()
    finally:
        server.stop(timeout=1)
    attempts = sorted((s for s in spans_of(exporter) if s.kind == "CLIENT"), key=lambda s: s.start_ns)
    # version-trace id-parent id-flags (sampled, and "random trace id" in this SDK: 03)
    expected = [f"00-{a.trace_id:032x}-{a.span_id:016x}" for a in attempts]
    assert [value.rsplit("-", 1)[0] for value in seen] == expected
    assert len(set(seen)) == 3 and {a.attributes["hammerlab.transport"] for a in attempts} == {backend}
    if backend == "fast":  # the cached request head stays one entry: the header goes after it
        assert len(transport._requests) == 1
