"""`--otel` (Locust's own flag): trace every client class's pipeline with the tracer provider that Locust
set up from the standard `OTEL_*` variables. Nothing here configures OpenTelemetry a second time.

Metrics need nothing from Hammerlab: Locust records `locust.client.duration` from the request event, and
the reporter fires one per outcome (`GET /doWork`, `GET /doWork [retry]`, `SHED /doWork [throttle]`, ...),
so the histogram is keyed by the same names as the stats rows.
"""

from __future__ import annotations

import logging
from typing import Any

from mitigations.core import Pipeline

log = logging.getLogger("hammerlab")
_warned: set[str] = set()


def otel_requested(parsed_options: Any | None) -> bool:
    return bool(getattr(parsed_options, "otel", False))


def trace_pipeline(pipeline: Pipeline, client: str) -> bool:
    """Trace `pipeline` when Locust's OpenTelemetry setup left a real tracer provider. True if it does."""
    try:
        from mitigations.tracing import CallTracer, sdk_configured
    except ImportError:
        _warn_once("missing", "hammerlab: --otel: the OpenTelemetry packages are not installed "
                   "(pip install 'hammerlab[otel]'); no spans")  # fmt: skip
        return False
    if not sdk_configured():  # Locust said why (no exporter configured, or no SDK)
        _warn_once("unset", "hammerlab: --otel: no tracer provider is set (OTEL_TRACES_EXPORTER=none?); "
                   "no spans")  # fmt: skip
        return False
    pipeline.trace(CallTracer(client=client, transport=pipeline.transport))
    return True


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(message)
