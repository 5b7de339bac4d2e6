"""Classifying what came back from the wire into one stable kind: a status code, or an exception from
either backend (see `mitigations.transport`'s module doc for the kinds and the blame rule)."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from http.client import RemoteDisconnected

import requests
import urllib3

from mitigations.core import (
    Call,
    ClientError,
    ConnectionReset,
    ConnectRefused,
    ConnectTimeout,
    DeadlineExpired,
    HammerError,
    HttpClientError,
    HttpServerError,
    Outcome,
    ReadTimeout,
    ResponseReset,
    ServerFailure,
    ServiceUnavailable,
    TooManyRequests,
    TransportError,
)
from mitigations.timeout import timeout_failure


def classify_status(status: int, *, count_429: bool = True, expired: bool = False) -> ServerFailure | None:
    """HTTP status to failure: 2xx and 3xx are fine; 429 and 5xx count against the server (429 only
    with `count_429`); any other 4xx fails the call but not the server. `expired`: the answer carried
    `X-Deadline-Expired`, so a 504 is the server dropping work whose propagated deadline had passed."""
    if status == 504 and expired:
        return DeadlineExpired()
    if status == 503:
        return ServiceUnavailable()
    if status >= 500:
        return HttpServerError(str(status))
    if status == 429:
        return TooManyRequests(overload=count_429)
    if status >= 400:
        return HttpClientError(str(status))
    return None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it wraps (args, __cause__, __context__, urllib3's .reason)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo.extend(arg for arg in current.args if isinstance(arg, BaseException))
        for linked in (current.__cause__, current.__context__, getattr(current, "reason", None)):
            if isinstance(linked, BaseException):
                todo.append(linked)


_CONNECT_TIMEOUTS = (requests.exceptions.ConnectTimeout, urllib3.exceptions.ConnectTimeoutError)
_RESETS = (
    ConnectionResetError,
    BrokenPipeError,
    ConnectionAbortedError,
    RemoteDisconnected,
    requests.exceptions.ChunkedEncodingError,
)
_READ_TIMEOUTS = (requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError, TimeoutError)


# Local resources the client's own machine ran out of while creating or connecting a socket.
CLIENT_ERRNOS = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.EADDRNOTAVAIL, errno.EADDRINUSE, errno.ENOBUFS, errno.ENOMEM}
)


def classify_exception(exc: BaseException, *, response_started: bool = False) -> HammerError:
    """Any network-level exception from either backend to one stable kind. `response_started`: the
    status line had arrived when it was raised, so a reset is `reset-mid-response`."""
    causes = list(_causes(exc))
    # The client's own machine first: urllib3 wraps EMFILE in NewConnectionError, a ConnectTimeoutError.
    if any(isinstance(c, OSError) and c.errno in CLIENT_ERRNOS for c in causes):
        return ClientError()
    error = _classify_network(causes, type(exc).__name__)
    if response_started and isinstance(error, ConnectionReset | TransportError):
        return ResponseReset()  # cut or closed early mid-body: the server probably did the work
    return error


def _classify_network(causes: list[BaseException], name: str) -> ServerFailure:
    # Refused first: urllib3's NewConnectionError is a subclass of its ConnectTimeoutError.
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return ConnectRefused()
    if any(isinstance(c, _CONNECT_TIMEOUTS) for c in causes):
        return ConnectTimeout()
    if any(isinstance(c, _RESETS) for c in causes):
        return ConnectionReset()
    if any(isinstance(c, _READ_TIMEOUTS) for c in causes):
        return ReadTimeout()
    if any(isinstance(c, OSError) and c.errno in (errno.ECONNRESET, errno.EPIPE) for c in causes):
        return ConnectionReset()
    if any("connection closed" in str(c).lower() or "disconnected" in str(c).lower() for c in causes):
        return ConnectionReset()
    return TransportError(name)


def failure_outcome(call: Call, exc: BaseException, now: float, *, response_started: bool = False) -> Outcome:
    """The outcome of a send that raised. A timeout that the deadline capped is named `deadline`."""
    if isinstance(exc, HammerError):
        error: HammerError = exc
    else:
        error = classify_exception(exc, response_started=response_started)
    if isinstance(error, ConnectTimeout | ReadTimeout):
        error = timeout_failure(call, now, "connect" if isinstance(error, ConnectTimeout) else "read")
    return Outcome(call=call, finished_at=now, error=error)
