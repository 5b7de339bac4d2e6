"""Tracing a pipeline with OpenTelemetry: a span per logical call, a child span per wire attempt, and a
span event for every decision a mitigation makes.

    pipeline.trace(CallTracer(client="NaiveRetryClient", transport=pipeline.transport))

The tree of one call (docs/tracing.md):

    call GET /doWork                      INTERNAL  the logical call, from launch to its one outcome
      ├─ event hammerlab.retry            a retry was scheduled (attempt, delay)
      ├─ event hammerlab.shed             a policy held the call (or a retry) back, with its cause
      ├─ event hammerlab.breaker          a breaker changed state;  hammerlab.limit: a limit moved
      ├─ GET /doWork                      CLIENT    attempt 1, with `traceparent` on the wire
      └─ GET /doWork                      CLIENT    attempt 2 (a retry) ...

A call `Defer` replays runs in the drainer's greenlet, outside any call: it gets its own root span,
`replay GET /doWork`, and its attempts say `hammerlab.replay`. The two copies `Hedge` races run in
greenlets it spawned inside the call: they stay under the call's span (the hedge says `hammerlab.hedge`),
and the copy cancelled when the other won ends `cancelled`.

Only this module imports OpenTelemetry, and only a pipeline being traced imports this module, so the
mitigations work without the packages installed (`pip install 'hammerlab[otel]'` brings them). Which
tracer provider and exporters are used is not decided here: Locust's `--otel` sets the global provider
up from the standard `OTEL_*` variables, and the tracer comes from it.
"""

from __future__ import annotations

import contextvars
import dataclasses
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import gevent
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from mitigations.core import Call, Next, Outcome, PipelineEvents

INSTRUMENTATION = "hammerlab.mitigations"


def sdk_configured() -> bool:
    """Whether a real tracer provider is set (Locust's `--otel` found an exporter): without one, every
    span would be a no-op that still costs its bookkeeping."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider | trace.NoOpTracerProvider)


@dataclass
class _Active:
    """The span of the logical call (or replay) running in this greenlet, and its attempts so far."""

    span: trace.Span
    replay: bool
    attempts: int = 0


# Per greenlet: gevent gives each greenlet its own context, and a spawned one starts empty.
_ACTIVE: contextvars.ContextVar[_Active | None] = contextvars.ContextVar("hammerlab_call", default=None)


class CallTracer:
    """The OpenTelemetry `PipelineTracer` (see `mitigations.core.Pipeline.trace`)."""

    def __init__(self, *, client: str = "client", transport: Any = None, tracer: Any = None) -> None:
        self.client = client
        self.transport = getattr(transport, "backend", type(transport).__name__ if transport else "")
        base = getattr(getattr(transport, "config", None), "base_url", None)
        parts = urlsplit(base) if base else None
        self._base = base.rstrip("/") if base else ""
        self._server = (
            {}
            if parts is None
            else {
                "server.address": parts.hostname or "",
                "server.port": parts.port or (443 if parts.scheme == "https" else 80),
            }
        )
        self._tracer = tracer or trace.get_tracer(INSTRUMENTATION)
        self._propagator = TraceContextTextMapPropagator()

    # -- spans -------------------------------------------------------------------------------------

    def call(self, call: Call, proceed: Next) -> Outcome:
        return self._run(call, proceed, replay=False)

    def step(self, call: Call, proceed: Next) -> Outcome:
        if _ACTIVE.get() is not None:
            return proceed(call)
        inherited = _spawners_call()
        if inherited is not None:  # a greenlet a policy spawned inside a call: Hedge's two copies
            return inherited.run(proceed, call)
        return self._run(call, proceed, replay=True)  # started by a policy on its own: Defer's replay

    def _run(self, call: Call, proceed: Next, *, replay: bool) -> Outcome:
        name = f"{'replay' if replay else 'call'} {call.method.upper()} {call.label}"
        span = self._tracer.start_span(name, kind=SpanKind.INTERNAL, attributes={
            "hammerlab.client": self.client,
            "http.request.method": call.method.upper(),
            "url.path": call.path,
            "hammerlab.replay": replay,
        })  # fmt: skip
        active = _Active(span, replay)
        token = otel_context.attach(trace.set_span_in_context(span))
        mine = _ACTIVE.set(active)
        outcome: Outcome | None = None
        try:
            outcome = proceed(call)
            return outcome
        finally:
            _ACTIVE.reset(mine)
            otel_context.detach(token)
            span.set_attribute("hammerlab.attempts", active.attempts)
            if outcome is None:  # ended before an answer (the test's drain ran out), or a bug below
                span.set_attribute("hammerlab.outcome", "unfinished")
                span.set_status(Status(StatusCode.ERROR, "unfinished"))
            else:
                _describe(span, outcome)
            span.end()

    def attempt(self, call: Call, send: Next) -> Outcome:
        active = _ACTIVE.get()
        if active is not None:
            active.attempts += 1
        attributes: dict[str, Any] = {
            "http.request.method": call.method.upper(),
            "url.full": self._base + call.path,
            **self._server,
            "hammerlab.attempt": call.attempt,
            "hammerlab.transport": self.transport,
            "hammerlab.retry": call.attempt > 1,
            "hammerlab.hedge": call.hedge,
            "hammerlab.replay": active is not None and active.replay,
        }
        if call.attempt > 1:
            attributes["http.request.resend_count"] = call.attempt - 1
        span = self._tracer.start_span(f"{call.method.upper()} {call.label}", kind=SpanKind.CLIENT,
                                       attributes=attributes)  # fmt: skip
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier, context=trace.set_span_in_context(span))
        outcome: Outcome | None = None
        sent = dataclasses.replace(call, headers={**call.headers, **carrier}) if carrier else call
        try:
            outcome = send(sent)
            return outcome
        finally:
            if outcome is None:  # killed on the wire: the hedge's loser, or the end of the test
                span.set_attribute("hammerlab.outcome", "cancelled")
            else:
                _describe(span, outcome)
            span.end()

    # -- span events: one per mitigation decision ----------------------------------------------------

    def attach(self, events: PipelineEvents) -> None:
        events.on("client", self._named)
        events.on("shed", self._shed)
        events.on("retry", self._retry)
        events.on("hedge", self._hedge)
        events.on("state", self._state)
        events.on("limit", self._limit)
        events.on("expired", self._expired)
        events.on("recovered", self._recovered)

    def _named(self, client: str) -> None:
        self.client = client

    def _shed(self, outcome: Outcome) -> None:
        cause = getattr(outcome.error, "cause", "shed")
        attempt = outcome.call.attempt
        self._event("hammerlab.shed", {"hammerlab.shed.cause": cause, "hammerlab.attempt": attempt})

    def _retry(self, call: Call, delay: float) -> None:
        attributes = {"hammerlab.attempt": call.attempt, "hammerlab.retry.delay_ms": delay * 1e3}
        self._event("hammerlab.retry", attributes)

    def _hedge(self, call: Call) -> None:
        self._event("hammerlab.hedge", {"hammerlab.attempt": call.attempt})

    def _state(self, policy: object, old: str, new: str) -> None:
        self._event("hammerlab.breaker", {
            "hammerlab.policy": getattr(policy, "name", type(policy).__name__),
            "hammerlab.state.from": old,
            "hammerlab.state.to": new,
        })  # fmt: skip

    def _limit(self, policy: object, value: float) -> None:
        name = getattr(policy, "name", type(policy).__name__)
        self._event("hammerlab.limit", {"hammerlab.policy": name, "hammerlab.limit": value})

    def _expired(self, outcome: Outcome) -> None:
        path = outcome.call.path
        self._event("hammerlab.shed", {"hammerlab.shed.cause": "defer-expired", "url.path": path})

    def _recovered(self, count: int) -> None:
        self._event("hammerlab.defer.recovered", {"hammerlab.defer.count": count})

    def _event(self, name: str, attributes: dict[str, Any]) -> None:
        """On the call's span; a decision taken outside any call (the drainer's) gets a span of its own."""
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(name, attributes)
            return
        alone = self._tracer.start_span(name, attributes={"hammerlab.client": self.client})
        alone.add_event(name, attributes)
        alone.end()


def _spawners_call() -> contextvars.Context | None:
    """A copy of the context of the greenlet that spawned this one, if that greenlet is inside a traced
    call: gevent starts a spawned greenlet with an empty context, so a policy's own greenlets would
    otherwise lose their call."""
    spawner = getattr(gevent.getcurrent(), "spawning_greenlet", None)
    parent = spawner() if spawner is not None else None
    context = getattr(parent, "gr_context", None)
    if context is None or context.get(_ACTIVE) is None:
        return None
    return context.copy()


def _describe(span: trace.Span, outcome: Outcome) -> None:
    """How an attempt or a call ended: its outcome kind (`ok`, `503`, `shed:throttle`, ...), its status."""
    span.set_attribute("hammerlab.outcome", outcome.kind)
    if outcome.status is not None:
        span.set_attribute("http.response.status_code", outcome.status)
    if not outcome.ok:
        span.set_attribute("error.type", outcome.kind)
        span.set_status(Status(StatusCode.ERROR, outcome.kind))
