"""`--otel`: a server span per request, continuing the caller's trace from its W3C `traceparent`.

A retry storm then shows from both sides: each client attempt's span has the server's span for it as
its child, with what the server did with the request:
  - `hammerlab.queue_ms`: how long the request waited before the app saw it (the kernel's accept queue
    and receive buffer, from TCP_INFO; `deadline.kernel_wait_s`), in steps of the kernel's clock tick
    (4 ms at HZ=250), so the span itself starts when the app sees the request;
  - `hammerlab.outcome`: completed, rejected (shed as too busy), error, bad-request, abandoned (the
    client hung up first) or expired (its propagated deadline passed), and a boolean for the three
    that mean the work was not done: `hammerlab.rejected`, `hammerlab.expired`, `hammerlab.abandoned`;
  - `hammerlab.cpu_ms`: the CPU its tasks spent; `hammerlab.fault`: an injected fault that hit it.
The app leaves these in the WSGI environ (`OUTCOME_KEY`, ...), so it knows nothing of OpenTelemetry.
Health and monitoring paths (/ping, /stats, /metrics, /admin) get no span.

The exporters follow the standard variables, as Locust's `--otel` does for the client side:
`OTEL_TRACES_EXPORTER` (otlp, console or none; default otlp), `OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_EXPORTER_OTLP_PROTOCOL` (http/protobuf, the default here, or grpc when its package is installed),
`OTEL_SERVICE_NAME` (default `hammerlab-target`), `OTEL_TRACES_SAMPLER`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from target_server.connections import os_socket

OUTCOME_KEY = "hammerlab.outcome"
CPU_KEY = "hammerlab.cpu_ms"
FAULT_KEY = "hammerlab.fault"
UNTRACED_PREFIXES = ("/ping", "/stats", "/metrics", "/admin")
NOT_DONE = ("rejected", "expired", "abandoned")
SERVICE_NAME = "hammerlab-target"
INSTALL_HINT = "pip install 'hammerlab[otel]'"


class TracingError(Exception):
    """`--otel` cannot start: the packages are missing or an OTEL_* variable is not understood."""


def start_tracing(env: Mapping[str, str]) -> None:
    """Set the process's tracer provider up from the OTEL_* variables, once. A provider already set (a
    test's in-memory one, a host application's) is kept. Raises TracingError with one line."""
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SimpleSpanProcessor,
        )
    except ImportError:
        raise TracingError(f"--otel needs the OpenTelemetry packages: {INSTALL_HINT}") from None
    chosen = [e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if e.strip()]
    unknown = sorted(set(chosen) - {"otlp", "console", "none"})
    if unknown:
        raise TracingError(f"OTEL_TRACES_EXPORTER: {unknown[0]!r} is not one of otlp, console, none")
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return
    provider = TracerProvider(
        resource=Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or SERVICE_NAME})
    )
    if "otlp" in chosen:
        provider.add_span_processor(BatchSpanProcessor(_otlp_exporter(env)))
    if "console" in chosen:
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)


def _otlp_exporter(env: Mapping[str, str]) -> Any:
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    protocol = (protocol or "http/protobuf").strip().lower()
    try:
        if protocol in ("http/protobuf", "http"):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        elif protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            raise TracingError(f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not one of http/protobuf, grpc")
    except ImportError:
        package = "opentelemetry-exporter-otlp-proto-" + ("grpc" if protocol == "grpc" else "http")
        raise TracingError(f"OTLP over {protocol} needs {package} (or set OTEL_EXPORTER_OTLP_PROTOCOL="
                           "http/protobuf, which hammerlab[otel] brings)") from None  # fmt: skip
    return OTLPSpanExporter()


def _header(environ: Mapping[str, Any], key: str) -> list[str]:
    value = environ.get("HTTP_" + key.upper().replace("-", "_"))
    return [] if value is None else [value]


class ServerSpans:
    """WSGI middleware: one SERVER span per traced request, a child of the caller's `traceparent`."""

    def __init__(self, app: Any) -> None:
        from opentelemetry import trace
        from opentelemetry.propagators.textmap import Getter
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        class EnvironGetter(Getter[Mapping[str, Any]]):
            def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
                return _header(carrier, key) or None

            def keys(self, carrier: Mapping[str, Any]) -> list[str]:
                return [k[5:].lower().replace("_", "-") for k in carrier if k.startswith("HTTP_")]

        self.app = app
        self._trace = trace
        self._tracer = trace.get_tracer("hammerlab.target")
        self._propagator = TraceContextTextMapPropagator()
        self._getter = EnvironGetter()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path.startswith(UNTRACED_PREFIXES):
            return self.app(environ, start_response)
        from target_server.deadline import kernel_wait_s

        queued_s = kernel_wait_s(os_socket(environ))
        method = environ.get("REQUEST_METHOD", "GET")
        span = self._tracer.start_span(
            f"{method} {path}",
            context=self._propagator.extract(environ, getter=self._getter),
            kind=self._trace.SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "url.path": path,
                "client.address": environ.get("REMOTE_ADDR", ""),
                "hammerlab.queue_ms": queued_s * 1000,
            },
        )
        statuses: list[int] = []

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            statuses.append(int(status[:3]))
            return start_response(status, headers, exc_info)

        try:
            return self.app(environ, start)
        finally:
            self._finish(span, environ, statuses[-1] if statuses else None)

    def _finish(self, span: Any, environ: Mapping[str, Any], status: int | None) -> None:
        outcome = environ.get(OUTCOME_KEY)
        if status is not None:
            span.set_attribute("http.response.status_code", status)
        if outcome is not None:
            span.set_attribute("hammerlab.outcome", outcome)
            for word in NOT_DONE:
                span.set_attribute(f"hammerlab.{word}", outcome == word)
        span.set_attribute("hammerlab.cpu_ms", float(environ.get(CPU_KEY, 0.0)))
        if FAULT_KEY in environ:
            span.set_attribute("hammerlab.fault", environ[FAULT_KEY])
        if status is not None and status >= 500:  # a server span fails on 5xx only (HTTP semconv)
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, str(status)))
        span.end()
