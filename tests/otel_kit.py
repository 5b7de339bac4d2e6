"""Test helpers for tracing: the SDK's in-memory exporters, an OTLP/HTTP collector on loopback, and a
text rendering of a trace.

OpenTelemetry lets a process set its global tracer and meter providers once, so `install()` sets them
once per test session (an in-memory span exporter and metric reader) and every tracing test shares them;
each test clears the exporter first. Not a test module (no `test_` prefix); tests import it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gevent.pywsgi import WSGIServer
from opentelemetry import metrics, trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

_installed: tuple[InMemorySpanExporter, InMemoryMetricReader] | None = None


def install() -> tuple[InMemorySpanExporter, InMemoryMetricReader]:
    """The session's global providers: every span ends in the returned exporter, every metric in the
    reader. What Locust's `--otel` sets up, with in-memory exporters instead of OTLP."""
    global _installed
    if _installed is None:
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        _installed = (exporter, reader)
    return _installed


@dataclass
class Span:
    """One finished span, from either side (the SDK's `ReadableSpan` or an OTLP export), as plain data."""

    trace_id: int
    span_id: int
    parent_id: int | None
    name: str
    kind: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @classmethod
    def of(cls, span: ReadableSpan) -> Span:
        return cls(
            trace_id=span.context.trace_id,
            span_id=span.context.span_id,
            parent_id=span.parent.span_id if span.parent else None,
            name=span.name,
            kind=span.kind.name,
            start_ns=span.start_time or 0,
            end_ns=span.end_time or 0,
            attributes=dict(span.attributes or {}),
            events=[(event.name, dict(event.attributes or {})) for event in span.events],
        )


def spans_of(exporter: InMemorySpanExporter) -> list[Span]:
    return [Span.of(span) for span in exporter.get_finished_spans()]


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


_KINDS = {1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


class OtlpCollector:
    """The receiving end of OTLP over HTTP (`OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`), on loopback:
    POST /v1/traces with a protobuf body, decoded with the protocol's own message classes."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.posts = 0
        self.server = WSGIServer(("127.0.0.1", 0), self._app, log=None)
        self.server.start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_port}"

    def _app(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        if environ.get("PATH_INFO") != "/v1/traces":
            start_response("404 Not Found", [("Content-Length", "0")])
            return [b""]
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.posts += 1
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                self.spans.extend(self._span(span) for span in scope.spans)
        start_response("200 OK", [("Content-Type", "application/x-protobuf"), ("Content-Length", "0")])
        return [b""]

    @staticmethod
    def _span(span: Any) -> Span:
        return Span(
            trace_id=int.from_bytes(span.trace_id, "big"),
            span_id=int.from_bytes(span.span_id, "big"),
            parent_id=int.from_bytes(span.parent_span_id, "big") if span.parent_span_id else None,
            name=span.name,
            kind=_KINDS.get(span.kind, str(span.kind)),
            start_ns=span.start_time_unix_nano,
            end_ns=span.end_time_unix_nano,
            attributes={a.key: _value(a.value) for a in span.attributes},
            events=[(e.name, {a.key: _value(a.value) for a in e.attributes}) for e in span.events],
        )

    def stop(self) -> None:
        self.server.stop(timeout=1)


SHOWN = (
    "hammerlab.client", "hammerlab.attempt", "hammerlab.transport", "hammerlab.retry", "hammerlab.replay",
    "hammerlab.attempts", "hammerlab.outcome", "http.response.status_code", "hammerlab.queue_ms",
    "hammerlab.cpu_ms", "hammerlab.rejected", "hammerlab.expired", "hammerlab.abandoned", "hammerlab.fault",
)  # fmt: skip


def render(spans: Iterable[Span], trace_id: int) -> str:
    """One trace as an indented tree: each span's kind, name, duration and chosen attributes, then its
    events, then its children in start order."""
    mine = [s for s in spans if s.trace_id == trace_id]
    children: dict[int | None, list[Span]] = {}
    ids = {s.span_id for s in mine}
    for span in sorted(mine, key=lambda s: s.start_ns):
        children.setdefault(span.parent_id if span.parent_id in ids else None, []).append(span)
    lines = [f"trace {trace_id:032x}"]

    def walk(span: Span, depth: int) -> None:
        pad = "  " * depth
        shown = " ".join(f"{k.split('.', 1)[-1]}={span.attributes[k]}" for k in SHOWN if k in span.attributes)
        millis = (span.end_ns - span.start_ns) / 1e6
        lines.append(f"{pad}{span.kind:<8} {span.name}  {millis:.1f} ms  {shown}")
        for name, attributes in span.events:
            lines.append(f"{pad}  event {name} {attributes}")
        for child in children.get(span.span_id, []):
            walk(child, depth + 1)

    for root in children.get(None, []):
        walk(root, 1)
    return "\n".join(lines)


__all__ = ["OtlpCollector", "Span", "install", "render", "spans_of"]
