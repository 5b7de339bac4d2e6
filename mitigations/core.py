"""The shared vocabulary of the mitigation pipeline: Call, Outcome, the error kinds, Policy and Pipeline.

A request travels as a `Call` through a `Pipeline` of policies to a transport, and every call ends as
exactly one `Outcome`: it was answered (`ok`), it failed on the wire (a `ServerFailure` kind), or it
never reached the server (`shed`, with a short stable cause: a policy held it back, or the client's own
machine failed it, cause `client-error`).

Blame lands where it belongs. One predicate, `Outcome.is_server_failure`, says whether an outcome counts
against the server's health, and every policy that judges the server (breaker, adaptive limit, SRE
throttle) consults it and nothing else:
  - counted: connect errors, resets, read timeouts, 5xx, 503, 429 (an overload answer; the transport can
    be told not to count it), and `deadline` on the wire;
  - never counted: a 4xx other than 429, anything shed, and a local error on the client's machine
    (`ClientError`, e.g. EMFILE "too many open files" or EADDRNOTAVAIL), which is a shed with cause
    `client-error` because the request never reached the server.
The deadline rule: an attempt goes on the wire only while at least `min_wire_share` (default half) of
its total deadline is left (`Call.send_by`). Past that point it is shed with `QueuedPastDeadline` (cause
`deadline`): the client used the deadline up (queued for a slot or a socket, or on earlier attempts),
and the server would get too little time to answer. So a `deadline` on the wire always had at least
half the budget on the wire, and counting it against the server is fair.

Nothing here knows about Locust. Policies report what they do through `PipelineEvents`, and the Locust
side (`locust_plugin`) listens.

The pieces live by idea: `clock` (time), `errors` (one exception type per cause), `call` (`Call`,
`Outcome`), `events` (`PipelineEvents`); this module holds the policy protocol and the `Pipeline`, and
re-exports the rest, so `from mitigations.core import ...` reaches the whole vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from mitigations.call import Call, Outcome
from mitigations.clock import SYSTEM_CLOCK, Clock, FakeClock, MonotonicClock
from mitigations.errors import (
    AdaptiveLimitRejected,
    CircuitOpen,
    ClientError,
    ConnectionReset,
    ConnectRefused,
    ConnectTimeout,
    DeadlineExceeded,
    DeadlineExpired,
    DeferExpired,
    DeferQueueFull,
    Deferred,
    HammerError,
    HttpClientError,
    HttpServerError,
    QueuedPastDeadline,
    ReadTimeout,
    ResponseReset,
    RetryBudgetExhausted,
    ServerFailure,
    ServiceUnavailable,
    Shed,
    SreThrottled,
    ThrottleRejected,
    TooManyRequests,
    TransportError,
)
from mitigations.events import Listener, PipelineEvents

__all__ = [
    "DEFAULT_MIN_WIRE_SHARE",
    "SYSTEM_CLOCK",
    "AdaptiveLimitRejected",
    "BasePolicy",
    "Call",
    "CircuitOpen",
    "ClientError",
    "Clock",
    "ConnectRefused",
    "ConnectTimeout",
    "ConnectionReset",
    "DeadlineExceeded",
    "DeadlineExpired",
    "DeferExpired",
    "DeferQueueFull",
    "Deferred",
    "FakeClock",
    "Gauges",
    "HammerError",
    "HttpClientError",
    "HttpServerError",
    "Listener",
    "MonotonicClock",
    "Next",
    "Outcome",
    "Pipeline",
    "PipelineEvents",
    "PipelineTracer",
    "Policy",
    "QueuedPastDeadline",
    "ReadTimeout",
    "ResponseReset",
    "RetryBudgetExhausted",
    "ServerFailure",
    "ServiceUnavailable",
    "Shed",
    "SreThrottled",
    "ThrottleRejected",
    "TooManyRequests",
    "Transport",
    "TransportError",
]

# The share of a call's total deadline that an attempt must still have when it goes on the wire.
DEFAULT_MIN_WIRE_SHARE = 0.5

Next = Callable[[Call], Outcome]


Gauges = dict[str, object]
"""What a policy shows on the Mitigations board and in PREFIX_mitigations.csv, by the client
snapshot's name for each value (`locust_plugin.client_stats.ClientSnapshot`), as resilience4j's
`getMetrics()`: the stats code asks each policy and knows none of their types. When two policies of a
pipeline report the same name, numbers add up (a throttle's queue and an adaptive limit's are one
`queue_depth`) and anything else keeps the outermost policy's value."""


class Policy(Protocol):
    """One mitigation. It may shed the call, or pass it on with `proceed(call)`, maybe several times.

    `bind` is called once when the policy joins a pipeline, to give it the shared clock and events.
    A policy must never hold a lock across `proceed`: under gevent that serialises every request.
    """

    name: str

    def bind(self, clock: Clock, events: PipelineEvents) -> None: ...

    def execute(self, call: Call, proceed: Next) -> Outcome: ...

    def gauges(self, wall_now: float) -> Gauges: ...


class BasePolicy:
    """Convenience base: keeps the bound clock and events, and builds shed outcomes."""

    name = "policy"

    def __init__(self) -> None:
        self.clock: Clock = SYSTEM_CLOCK
        self.events = PipelineEvents()

    def bind(self, clock: Clock, events: PipelineEvents) -> None:
        self.clock = clock
        self.events = events

    def shed(self, call: Call, error: Shed) -> Outcome:
        """End `call` here without touching the wire, and announce it."""
        outcome = Outcome(call=call, finished_at=self.clock.now(), error=error)
        self.events.emit("shed", outcome)
        return outcome

    def execute(self, call: Call, proceed: Next) -> Outcome:
        raise NotImplementedError

    def gauges(self, wall_now: float) -> Gauges:
        """None by default: a policy with nothing to show adds no column. `wall_now` is the snapshot's
        wall-clock time, for a policy that stamps what it reports with its own (monotonic) clock."""
        return {}


class Transport(Protocol):
    """Puts a call on the wire and classifies what came back. Never raises for HTTP-level failures."""

    def send(self, call: Call) -> Outcome: ...


class PipelineTracer(Protocol):
    """What a pipeline asks of a tracer (`mitigations.tracing.CallTracer` is the OpenTelemetry one).
    A pipeline without one builds exactly the untraced chain, so tracing costs nothing while it is off."""

    def attach(self, events: PipelineEvents) -> None:
        """Listen to the pipeline's events (each mitigation decision becomes a span event)."""
        ...

    def call(self, call: Call, proceed: Next) -> Outcome:
        """Around one logical call, from `Pipeline.execute`."""
        ...

    def step(self, call: Call, proceed: Next) -> Outcome:
        """Around the rest of the chain below a policy: a call that enters here outside `call` was
        started by a policy on its own (`Defer` replaying a kept call)."""
        ...

    def attempt(self, call: Call, send: Next) -> Outcome:
        """Around one wire attempt: `send` the call, with whatever headers carry the trace."""
        ...


class Pipeline:
    """Policies in order, outermost first, around a transport.

    One pipeline per client class per process, shared by all its users: it is the application's one
    outbound client, as the seed's one HTTP agent was.
    """

    def __init__(
        self,
        policies: list[Policy],
        transport: Transport,
        *,
        clock: Clock = SYSTEM_CLOCK,
        events: PipelineEvents | None = None,
        total_timeout: float | None = None,
        min_wire_share: float = DEFAULT_MIN_WIRE_SHARE,
    ) -> None:
        if total_timeout is not None and total_timeout <= 0:
            raise ValueError(f"total_timeout must be > 0 seconds or None, got {total_timeout}")
        if isinstance(min_wire_share, bool) or not isinstance(min_wire_share, int | float):
            raise ValueError(f"min_wire_share must be a number in [0, 1), got {min_wire_share!r}")
        if not 0 <= min_wire_share < 1:
            raise ValueError(f"min_wire_share must be a number in [0, 1), got {min_wire_share!r}")
        self.min_wire_share = float(min_wire_share)
        self.policies = list(policies)
        self.transport = transport
        self.clock = clock
        self.events = events or PipelineEvents()
        self.total_timeout = total_timeout
        self.tracer: PipelineTracer | None = None
        for policy in self.policies:
            policy.bind(clock, self.events)
        self._entry = self._build()

    def trace(self, tracer: PipelineTracer) -> None:
        """Trace every call from now on: a span per call and per attempt (`mitigations.tracing`).
        Call it before the first call, since a policy may keep the chain it was handed (`Defer`)."""
        self.tracer = tracer
        tracer.attach(self.events)
        self._entry = self._build()

    def _build(self) -> Next:
        tracer = self.tracer
        attempt = None if tracer is None else tracer.attempt
        # Bound once: this closure runs for every attempt.
        now, emit, transport_send = self.clock.now, self.events.emit, self.transport.send

        def send(call: Call) -> Outcome:
            at = now()
            if call.sendable(at) == 0:
                # Used up in the client before reaching the wire: not the server's fault.
                outcome = Outcome(call=call, finished_at=at, error=QueuedPastDeadline())
                emit("shed", outcome)
                return outcome
            outcome = transport_send(call) if attempt is None else attempt(call, transport_send)
            # A local error (EMFILE, ...) never reached the server: it is shed, not a wire outcome.
            emit("shed" if isinstance(outcome.error, Shed) else "wire", outcome)
            return outcome

        step: Next = send
        for policy in reversed(self.policies):
            step = _chain(policy, step if tracer is None else _traced(tracer, step))
        return step if tracer is None else _traced_call(tracer, step)

    def execute(self, call: Call) -> Outcome:
        """Run one logical call through every policy. Stamps the deadline from launch time, and the
        last moment to send (`send_by`): at least `min_wire_share` of the deadline is kept for the wire."""
        if self.total_timeout is not None and call.deadline is None:
            call.deadline = call.launched_at + self.total_timeout
        if call.deadline is not None and call.send_by is None:
            call.send_by = call.deadline - self.min_wire_share * (call.deadline - call.launched_at)
        return self._entry(call)


def _chain(policy: Policy, proceed: Next) -> Next:
    execute = policy.execute  # bound once; a Python closure, which 3.11 calls without C recursion

    def step(call: Call) -> Outcome:
        return execute(call, proceed)

    return step


def _traced(tracer: PipelineTracer, proceed: Next) -> Next:
    def step(call: Call) -> Outcome:
        return tracer.step(call, proceed)

    return step


def _traced_call(tracer: PipelineTracer, proceed: Next) -> Next:
    def entry(call: Call) -> Outcome:
        return tracer.call(call, proceed)

    return entry
