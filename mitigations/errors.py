"""The errors a call can end with: one stable exception type per cause.

A `ServerFailure` reached for the wire and the server side failed it; a `Shed` never reached the server
(a policy held it back, or the client's own machine failed it). Locust groups failures by
repr(exception), so messages carry no variable data (no timings, no ids).
"""

from __future__ import annotations


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
