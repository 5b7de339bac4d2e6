"""The target's `--otel`: a server span per request under the caller's `traceparent`, saying what the
server did with it (completed and its CPU, rejected, expired); monitoring paths get none; what it cannot
start is one line and exit 2.

In-process, through Flask's test client, into the session's in-memory exporter (`tests.otel_kit`).
The cross-process path (a real target exporting over OTLP) is tests/test_tracing_e2e.py.
"""

from __future__ import annotations

import sys

import pytest

from target_server.__main__ import main as target_main
from target_server.app import create_app, state_of
from target_server.config import Config
from tests.otel_kit import install, spans_of

PARENT_TRACE = 0x0AF7651916CD43DD8448EB211C80319C
PARENT_SPAN = 0xB7AD6B7169203331
TRACEPARENT = f"00-{PARENT_TRACE:032x}-{PARENT_SPAN:016x}-01"


@pytest.fixture
def exporter():
    spans, _ = install()
    spans.clear()
    yield spans
    spans.clear()


@pytest.fixture
def target():
    made = []

    def make(**values):
        app = create_app(Config(quiet=True, otel=True, task_delay_ms=0, **values))
        made.append(app)
        return app

    yield make
    for app in made:
        state_of(app).stop()


def test_a_request_continues_the_callers_trace_with_its_outcome_and_cpu(exporter, target):
    app = target(sync_work_ms=5)
    response = app.test_client().get("/doWork", headers={"traceparent": TRACEPARENT})
    assert response.status_code == 200
    (span,) = spans_of(exporter)
    assert (span.kind, span.name) == ("SERVER", "GET /doWork")
    assert (span.trace_id, span.parent_id) == (PARENT_TRACE, PARENT_SPAN)
    assert span.attributes["hammerlab.outcome"] == "completed"
    assert span.attributes["http.response.status_code"] == 200
    # The 5 ms busy spin as CPU time (less than 5 ms on a busy machine), the same the server counts.
    cpu_ms = span.attributes["hammerlab.cpu_ms"]
    assert 0 < cpu_ms <= 50 and cpu_ms == pytest.approx(state_of(app).totals.work_cpu_ms)
    assert not any(span.attributes[f"hammerlab.{w}"] for w in ("rejected", "expired", "abandoned"))
    assert span.attributes["hammerlab.queue_ms"] == 0.0  # no socket under the test client


def test_a_rejected_and_an_expired_request_say_so_and_spent_no_cpu(exporter, target):
    app = target(reject_if_too_busy=True, drop_expired=True, seed=1)
    state_of(app).lag.lag_ms = 1000.0  # far past max_lag_ms (70): toobusy sheds every request
    assert app.test_client().get("/doWork").status_code == 503
    state_of(app).lag.lag_ms = 0.0
    expired = app.test_client().get("/doWork", headers={"X-Request-Deadline-Ms": "0"})
    assert expired.status_code == 504
    rejected, dropped = sorted(spans_of(exporter), key=lambda s: s.start_ns)
    assert (rejected.attributes["hammerlab.outcome"], rejected.attributes["hammerlab.rejected"]) == (
        "rejected", True,
    )  # fmt: skip
    assert dropped.attributes["hammerlab.outcome"] == "expired" and dropped.attributes["hammerlab.expired"]
    assert rejected.attributes["hammerlab.cpu_ms"] == dropped.attributes["hammerlab.cpu_ms"] == 0.0
    assert rejected.parent_id is None  # no traceparent: the server span starts a trace of its own


def test_monitoring_paths_get_no_span_and_without_otel_nothing_does(exporter, target):
    app = target()
    client = app.test_client()
    for path in ("/ping", "/stats", "/metrics", "/admin/faults"):
        client.get(path)
    assert spans_of(exporter) == []
    plain = create_app(Config(quiet=True, task_delay_ms=0, sync_work_ms=0))
    try:
        assert plain.test_client().get("/doWork", headers={"traceparent": TRACEPARENT}).status_code == 200
    finally:
        state_of(plain).stop()
    assert spans_of(exporter) == []


def test_otel_the_target_cannot_start_is_one_line_and_exit_2(monkeypatch, capsys):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    assert target_main(["--otel", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err == "target_server: error: OTEL_TRACES_EXPORTER: 'zipkin' is not one of otlp, console, none\n"
    monkeypatch.delenv("OTEL_TRACES_EXPORTER")
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if the extra were not installed
    assert target_main(["--otel", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "target_server: error: --otel needs the OpenTelemetry packages: pip install 'hammerlab[otel]'\n"
    )
