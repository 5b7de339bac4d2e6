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
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import gevent
import gevent.event

# -- time --------------------------------------------------------------------------------------------


class Clock(Protocol):
    """Where policies read time. Tests inject a `FakeClock` so that no unit test sleeps."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    def wait(self, event: gevent.event.Event, timeout: float | None) -> bool:
        """Wait for `event` at most `timeout` seconds (None: forever). True if it was set."""
        ...


class MonotonicClock:
    """The real clock: `time.monotonic` and a cooperative `gevent.sleep`."""

    # The builtin itself, not a method around it: every call reads the clock several times.
    now = staticmethod(time.monotonic)

    def sleep(self, seconds: float) -> None:
        gevent.sleep(max(0.0, seconds))

    def wait(self, event: gevent.event.Event, timeout: float | None) -> bool:
        return event.wait(None if timeout is None else max(0.0, timeout))


class FakeClock:
    """A clock that only moves when told to. `sleep` advances it at once."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def wait(self, event: gevent.event.Event, timeout: float | None) -> bool:
        """Let other greenlets run once; if that did not set `event`, the whole timeout passes."""
        gevent.sleep(0)
        if event.is_set():
            return True
        if timeout is None:
            raise RuntimeError("FakeClock.wait without a timeout would block forever")
        self.advance(max(0.0, timeout))
        return event.is_set()

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"cannot move a clock backwards by {seconds}")
        self._now += seconds


SYSTEM_CLOCK = MonotonicClock()

# The share of a call's total deadline that an attempt must still have when it goes on the wire.
DEFAULT_MIN_WIRE_SHARE = 0.5

# -- errors: one stable exception type per cause ---------------------------------------------------------
#
# Locust groups failures by repr(exception), so messages carry no variable data (no timings, no ids).


class HammerError(Exception):
    """Base of every error a call can end with."""

    kind: str = "error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.kind)


class ServerFailure(HammerError):
    """The request reached for the wire and the server side failed it."""

    counts_against_server: bool = True


class ConnectTimeout(ServerFailure):
    kind = "connect-timeout"


class ConnectRefused(ServerFailure):
    kind = "connect-refused"


class ConnectionReset(ServerFailure):
    """The connection was cut before the response's status line arrived."""

    kind = "reset"


class ResponseReset(ConnectionReset):
    """The connection was cut (or closed early) after the status line arrived, mid-response: the server
    probably did the work, so only an idempotent request may be sent again."""

    kind = "reset-mid-response"


class ReadTimeout(ServerFailure):
    kind = "read-timeout"


class DeadlineExceeded(ServerFailure):
    """The total deadline (counted from launch) ran out while the request was on the wire."""

    kind = "deadline"


class DeadlineExpired(ServerFailure):
    """The server dropped the request because the deadline the client propagated had passed (a 504
    marked `X-Deadline-Expired`): it did not do the work, and said so at once."""

    kind = "expired"


class HttpServerError(ServerFailure):
    """A 5xx other than 503. The message is the status code alone, a bounded set."""

    kind = "5xx"


class ServiceUnavailable(ServerFailure):
    """A 503: the server says it is overloaded and may say when to come back (Retry-After)."""

    kind = "503"


class HttpClientError(ServerFailure):
    """A 4xx. It fails the Locust request but does not count against the server's health."""

    kind = "4xx"
    counts_against_server = False


class TooManyRequests(ServerFailure):
    """A 429: the server (or a proxy in front of it) says the client sends too much, and may say when to
    come back (Retry-After, RFC 6585). An overload answer like 503, so by default it counts against the
    server's health; `overload=False` makes it a plain client error that counts for nothing."""

    kind = "429"

    def __init__(self, message: str | None = None, *, overload: bool = True) -> None:
        super().__init__(message)
        self.counts_against_server = overload


class TransportError(ServerFailure):
    """Any other failure below HTTP (protocol error, bad status line)."""

    kind = "transport"


class Shed(HammerError):
    """A policy held the request back: it never reached the wire."""

    cause: str = "shed"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.cause)


class ThrottleRejected(Shed):
    cause = "throttle"


class CircuitOpen(Shed):
    cause = "circuit-open"


class AdaptiveLimitRejected(Shed):
    cause = "adaptive"


class SreThrottled(Shed):
    cause = "sre-throttle"


class RetryBudgetExhausted(Shed):
    cause = "budget"


class Deferred(Shed):
    """Not sent yet, but not dropped: the call waits in `Defer`'s durable queue and is replayed later.
    Its final outcome arrives with the pipeline event `replayed` (or `expired`)."""

    cause = "deferred"


class DeferQueueFull(Shed):
    """A limiter shed the call and `Defer`'s queue was at `--defer-max-queue`: dropped after all."""

    cause = "defer-full"


class DeferExpired(Shed):
    """A deferred call grew older than its max age (counted from launch) before it could be replayed."""

    cause = "defer-expired"


class QueuedPastDeadline(Shed):
    """The deadline ran out, or too little of it was left to send (`Call.send_by` passed), while the
    request was still in the client, before it reached the wire. Not the server's fault: nothing counts it."""

    cause = "deadline"


class ClientError(Shed):
    """The client's own machine failed the request before it reached the server: a local OSError while
    creating or connecting a socket (EMFILE, ENFILE, EADDRNOTAVAIL, ENOBUFS, ENOMEM). A shed, so the
    server is never blamed and every launched request is still ok, a server failure or shed."""

    cause = "client-error"


# -- a call and its outcome -------------------------------------------------------------------------------


@dataclass
class Call:
    """One logical request as it travels the pipeline.

    `launched_at` is when the launcher *scheduled* it, not when it got going, so latency includes any
    queueing (no coordinated omission). `deadline` is absolute, on the same clock; `None` means none.
    `send_by` is the last moment an attempt may still go on the wire (see the module doc); the pipeline
    stamps it with the deadline, and `None` means until the deadline. `hedge` marks the second copy
    `Hedge` sent of a slow call (its own stats row, never hedged again). `recovered` marks a call an
    earlier run left in `Defer`'s file, as its replay or expiry announces it: the ledger counts it in
    its totals only, since this run never counted its launch under a criticality.
    """

    method: str
    path: str
    launched_at: float
    name: str | None = None
    deadline: float | None = None
    attempt: int = 1
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    send_by: float | None = None
    hedge: bool = False
    recovered: bool = False

    @property
    def label(self) -> str:
        """The stats name: `name` if given, else the path."""
        return self.name or self.path

    def remaining(self, now: float) -> float | None:
        """Seconds left before the deadline, never negative; `None` when there is no deadline."""
        return None if self.deadline is None else max(0.0, self.deadline - now)

    def sendable(self, now: float) -> float | None:
        """Seconds left in which an attempt may still go on the wire, never negative; `None`: no limit."""
        last = self.send_by if self.send_by is not None else self.deadline
        return None if last is None else max(0.0, last - now)


@dataclass(frozen=True)
class Outcome:
    """How a call ended. Exactly one per attempt that returns from the pipeline."""

    call: Call
    finished_at: float
    status: int | None = None
    error: HammerError | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    length: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def shed(self) -> bool:
        return isinstance(self.error, Shed)

    @property
    def reached_wire(self) -> bool:
        return not self.shed

    @property
    def kind(self) -> str:
        """`ok`, a server failure kind (`connect-timeout`, `503`, ...) or `shed:<cause>`."""
        if self.error is None:
            return "ok"
        if isinstance(self.error, Shed):
            return f"shed:{self.error.cause}"
        return self.error.kind

    @property
    def latency(self) -> float:
        """Seconds from scheduled launch to the end of this attempt."""
        return self.finished_at - self.call.launched_at

    def header(self, name: str) -> str | None:
        """A response header, case-insensitively."""
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return None

    @property
    def is_server_failure(self) -> bool:
        """Counts against the server's health (the one predicate every policy consults; see the module
        doc): wire failures, but not a 4xx other than a counted 429, and never a shed or client error."""
        return isinstance(self.error, ServerFailure) and self.error.counts_against_server


# -- events ---------------------------------------------------------------------------------------------


Listener = Callable[..., None]


class PipelineEvents:
    """A tiny event hub: policies `emit`, observers `on(...)`. Listeners must not block.

    Event names used across the project:
      - `wire(outcome)`: an attempt came back from the transport (ok or a server failure);
      - `shed(outcome)`: a policy held a call back;
      - `state(policy, old, new)`: a stateful policy changed state (breaker opened, ...);
      - `limit(policy, value)`: an adaptive limit moved;
      - `retry(call, delay)`: a retry was scheduled;
      - `hedge(call)`: `Hedge` sent a second copy of a slow call (`call.hedge` is True);
      - `client(name)`: the Locust side named the client class this pipeline belongs to;
      - `replayed(outcome)`: a call `Defer` had deferred got its final outcome (ok, a server failure,
        or a shed that is not deferrable); `outcome.call.launched_at` is the original launch;
      - `expired(outcome)`: a deferred call passed its max age and was dropped unsent (`DeferExpired`);
      - `recovered(count)`: `Defer` found `count` calls left on disk by an earlier run, to replay first.
    """

    def __init__(self) -> None:
        self._listeners: dict[str, list[Listener]] = {}
        self._claimers: dict[str, list[Callable[..., bool]]] = {}

    def on(self, event: str, listener: Listener) -> None:
        self._listeners.setdefault(event, []).append(listener)

    def claim(self, event: str, claimer: Callable[..., bool]) -> None:
        """Let `claimer(*args)` take `event` before any listener hears it: when it returns True, none
        does. A policy that turns another policy's outcome into something else (`Defer` keeps a call a
        limiter shed) claims it, so the outcome is not announced as two different things."""
        self._claimers.setdefault(event, []).append(claimer)

    def emit(self, event: str, *args: object) -> None:
        for claimer in self._claimers.get(event, ()):
            if claimer(*args):
                return
        for listener in self._listeners.get(event, ()):
            listener(*args)


# -- policies and the pipeline -------------------------------------------------------------------------------


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
