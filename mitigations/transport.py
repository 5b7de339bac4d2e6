"""Transports: the last step of a pipeline, where a call goes on the wire and comes back as an Outcome.

Two backends, matching Locust's two user types:
  - `RequestsTransport` uses requests + urllib3, as `HttpUser` does;
  - `FastTransport` uses geventhttpclient, as `FastHttpUser` does (about 4x cheaper per request).

Both are shared by every user of a client class in a process (the seed's one HTTP agent), never raise
for a network or HTTP failure, and classify every failure into one stable kind:
  - a `ServerFailure` kind when the request reached for the server and failed there;
  - `ClientError` (a shed, cause `client-error`) when the client's own machine failed it first: a local
    OSError such as EMFILE ("too many open files") or EADDRNOTAVAIL while creating or connecting a
    socket. The server never saw it, so nothing blames the server for it;
  - a reset is `reset` when the connection broke before the response's status line arrived, and
    `reset-mid-response` after it (the server probably did the work: only idempotent requests may be
    sent again). Both transports track the phase of the exchange to tell them apart;
  - a 429 is `429`, an overload answer (`TransportConfig.count_429` says whether it counts against the
    server's health; by default it does).

The socket cap is not enforced here: `SocketPool` admits at most `max_sockets` calls at once and the
transport's connection pool is sized to match, so the wait for a socket happens in a policy where it is
visible and bounded by the call's deadline. A transport with no cap opens as many sockets as there are
calls, as Node's `maxSockets: Infinity` did.
"""

from __future__ import annotations

import dataclasses
import errno
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.client import RemoteDisconnected
from typing import Any, Literal

import requests
import urllib3
from gevent import getcurrent
from gevent.hub import get_hub
from geventhttpclient.client import HTTPClient
from geventhttpclient.response import HTTPSocketPoolResponse

from mitigations.checked_url import CheckedURL, URLRefused, checked_url, request_target
from mitigations.core import (
    SYSTEM_CLOCK,
    Call,
    ClientError,
    Clock,
    ConnectionReset,
    ConnectRefused,
    ConnectTimeout,
    DeadlineExceeded,
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
from mitigations.outbound import PinnedConnectionPool, pinned_session
from mitigations.timeout import DEADLINE_HEADER, EXPIRED_HEADER, Timeouts, deadline_ms, timeout_failure

HttpBackend = Literal["requests", "fast"]
HTTP_BACKENDS: tuple[HttpBackend, ...] = ("requests", "fast")

# With no cap, the pool still needs a size: it bounds idle keep-alive sockets kept for reuse.
_UNCAPPED_POOL_SIZE = 10_000
REQUEST_CACHE_SIZE = 256  # distinct body-less requests a FastTransport keeps built
# W3C trace context (`mitigations.tracing`): a new value every attempt, so FastTransport sends them after
# its cached request head, as it does the deadline.
TRACE_HEADERS = ("traceparent", "tracestate")


@dataclass(frozen=True)
class TransportConfig:
    """How the transport talks to the host.

    `timeouts.connect` and `timeouts.read` are per socket operation (None: wait forever). The call's
    own deadline (stamped by the pipeline from `timeouts.total`) caps both and the whole exchange.
    `count_429`: a 429 answer counts against the server's health (an overload answer, like 503); False
    makes it a plain client error, as any other 4xx.
    """

    base_url: str
    max_connections: int | None = None
    keep_alive: bool = False
    timeouts: Timeouts = field(default_factory=Timeouts)
    count_429: bool = True
    allow_remote: bool = False  # the sending process's own --allow-remote; the environment's counts too
    target: CheckedURL = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Checked and resolved once, here: the transports connect to these addresses and nowhere else.
        object.__setattr__(self, "target", checked_url(self.base_url, self.allow_remote))
        if self.max_connections is not None and self.max_connections < 1:
            raise ValueError(f"max_connections must be >= 1 or None, got {self.max_connections}")
        if not isinstance(self.count_429, bool):
            raise ValueError(f"count_429 must be true or false, got {self.count_429!r}")

    @property
    def pool_size(self) -> int:
        return self.max_connections or _UNCAPPED_POOL_SIZE


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


_REQUESTS_FAILURES = (
    DeadlineExceeded,
    requests.exceptions.RequestException,
    OSError,
    urllib3.exceptions.HTTPError,
)


class RequestsTransport:
    """requests.Session over one urllib3 pool, shared by every user of a client class."""

    backend: HttpBackend = "requests"

    def __init__(self, config: TransportConfig, clock: Clock = SYSTEM_CLOCK) -> None:
        self.config = config
        self.clock = clock
        # Pinned to the checked addresses; no proxy, .netrc, redirect or hidden retry. SocketPool does the
        # waiting for a socket, where it is visible and bounded, so the pool never blocks.
        self.session = pinned_session(config.target, config.pool_size)
        self.session.headers["Connection"] = "keep-alive" if config.keep_alive else "close"

    def send(self, call: Call) -> Outcome:
        now = self.clock.now()
        if Timeouts.expired(call, now):
            return Outcome(call=call, finished_at=now, error=DeadlineExceeded())
        try:
            url = self.config.target.join(call.path).text
        except URLRefused:
            return Outcome(call=call, finished_at=now, error=ClientError())  # never sent: not the server's
        remaining = call.remaining(now)
        timeout = self.config.timeouts.for_call(call, now)
        headers = dict(call.headers)
        left = deadline_ms(call, now, self.config.timeouts.read)
        if left is not None:
            headers[DEADLINE_HEADER] = str(left)
        response = None
        try:
            timer = arm_deadline(remaining)
            try:
                # stream=True returns once the status line and headers are in, so a failure while the
                # body is read is known to be mid-response.
                response = self.session.request(
                    call.method,
                    url,
                    headers=headers,
                    data=call.body,
                    timeout=timeout,
                    allow_redirects=False,
                    stream=True,
                )
                body = response.content
            finally:
                if timer is not None:
                    timer.close()
        except _REQUESTS_FAILURES as exc:
            return failure_outcome(call, exc, self.clock.now(), response_started=response is not None)
        finally:
            if response is not None:
                response.close()
        return Outcome(
            call=call,
            finished_at=self.clock.now(),
            status=response.status_code,
            error=classify_status(
                response.status_code,
                count_429=self.config.count_429,
                expired=EXPIRED_HEADER in response.headers,
            ),
            headers=dict(response.headers),
            length=len(body),
        )

    def close(self) -> None:
        self.session.close()


class FastTransport:
    """geventhttpclient, shared by every user of a client class.

    geventhttpclient's own `HTTPClient.request` silently re-sends a request when a pooled socket turns
    out to be closed; that would hide resets from the lab. So this transport drives its connection pool
    and response parser directly, one attempt per call.
    """

    backend: HttpBackend = "fast"

    def __init__(self, config: TransportConfig, clock: Clock = SYSTEM_CLOCK) -> None:
        self.config = config
        self.clock = clock
        target = config.target
        if target.scheme != "http":
            raise ValueError(f"the fast backend speaks plain http only, got {config.base_url!r}")
        # geventhttpclient needs numbers; "none" is an hour, far past any lab run.
        timeouts = {
            "connection_timeout": config.timeouts.connect or 3600.0,
            "network_timeout": config.timeouts.read or 3600.0,
        }
        self._client = HTTPClient(
            target.host,
            port=target.port,
            concurrency=config.pool_size,
            headers={"Connection": "keep-alive" if config.keep_alive else "close", "Host": target.authority},
            **timeouts,
        )
        # The pool connects to the addresses the guard resolved; it never resolves the name again.
        self._client._connection_pool = PinnedConnectionPool(target, size=config.pool_size, **timeouts)
        self._base_path = target.target.split("?", 1)[0].rstrip("/")
        self._requests: dict[tuple[str, str, tuple[tuple[str, str], ...]], bytes] = {}

    def _request_bytes(self, call: Call) -> bytes:
        """The request on the wire. geventhttpclient builds and validates it afresh every time (about a
        tenth of a /ping's CPU here), so a body-less request is built once per method, path and headers."""
        if TRACE_HEADERS[0] in call.headers:
            kept = {k: v for k, v in call.headers.items() if k not in TRACE_HEADERS}
            head = self._request_bytes(dataclasses.replace(call, headers=kept))
            return with_headers(head, [(k, call.headers[k]) for k in TRACE_HEADERS if k in call.headers])
        key = (call.method, call.path, tuple(call.headers.items()))
        if not call.body:
            cached = self._requests.get(key)
            if cached is not None:
                return cached
        path = self._base_path + request_target(call.path)
        request = self._client._build_request(
            call.method.upper(), path, body=call.body or b"", headers=dict(call.headers)
        ).encode("latin-1")
        if not call.body:
            if len(self._requests) >= REQUEST_CACHE_SIZE:
                self._requests.clear()
            self._requests[key] = request
        return request

    def send(self, call: Call) -> Outcome:
        now = self.clock.now()
        if Timeouts.expired(call, now):
            return Outcome(call=call, finished_at=now, error=DeadlineExceeded())
        remaining = call.remaining(now)
        pool = self._client._connection_pool
        try:
            head = self._request_bytes(call)
        except URLRefused:
            return Outcome(call=call, finished_at=now, error=ClientError())  # never sent: not the server's
        request = with_deadline(head, deadline_ms(call, now, self.config.timeouts.read))
        sock = None
        response_started = False
        try:
            timer = arm_deadline(remaining)
            try:
                try:
                    sock = pool.get_socket()
                except TimeoutError as exc:
                    raise ConnectTimeout() from exc
                sock.sendall(request + (call.body or b""))  # the head carries Content-Length only
                # pool=None: this transport, not the response, decides whether the socket is reused.
                response = HTTPSocketPoolResponse(sock, None, method=call.method.upper())
                response_started = True  # the status line and headers are in
                body = response.read()
                if _bodiless(call.method, response.status_code):
                    pass
                elif len(body) < (response.content_length or 0):
                    raise ResponseReset()  # the server closed the connection before the whole body
                if self.config.keep_alive and not response.should_close():
                    pool.return_socket(sock)
                    sock = None
            finally:
                if timer is not None:
                    timer.close()
        except Exception as exc:
            return failure_outcome(call, exc, self.clock.now(), response_started=response_started)
        finally:
            if sock is not None:
                pool.release_socket(sock)
        status = response.status_code
        expired = status == 504 and response.get(EXPIRED_HEADER) is not None
        return Outcome(
            call=call,
            finished_at=self.clock.now(),
            status=status,
            error=classify_status(status, count_429=self.config.count_429, expired=expired),
            headers=dict(response.headers),
            length=len(body),
        )

    def close(self) -> None:
        self._client.close()


def arm_deadline(remaining: float | None) -> Any:
    """A timer that throws `DeadlineExceeded` into this greenlet `remaining` seconds from now, or None
    without a deadline; close it in a `finally`. What `gevent.Timeout(remaining, DeadlineExceeded)` does
    (the same libev timer, the same `throw`, the loop's time updated first), without the Timeout object
    around it, which cost about 2.5 µs of every call."""
    if remaining is None:
        return None
    timer = get_hub().loop.timer(remaining, priority=-1)  # as gevent.Timeout makes it
    timer.start(getcurrent().throw, DeadlineExceeded, update=True)
    return timer


def with_deadline(request: bytes, left_ms: int | None) -> bytes:
    """A built request head with `DEADLINE_HEADER: left_ms` added as its last header (the head is
    cached without it, because the value changes with every attempt)."""
    if left_ms is None:
        return request
    head = request[:-2]  # the head ends with the blank line's CRLF
    return head + f"{DEADLINE_HEADER}: {left_ms}\r\n\r\n".encode("ascii")


def with_headers(request: bytes, pairs: list[tuple[str, str]]) -> bytes:
    """A built request head with `pairs` added as its last headers."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in pairs)
    return request[:-2] + extra.encode("latin-1") + b"\r\n"


def _bodiless(method: str, status: int) -> bool:
    """A response that has no body whatever its Content-Length says (RFC 9110 §6.4.1)."""
    return method.upper() == "HEAD" or status in (204, 304) or 100 <= status < 200


def make_transport(backend: HttpBackend, config: TransportConfig, clock: Clock = SYSTEM_CLOCK):
    """The transport for a backend name, as the `--http-client` option spells it."""
    if backend == "requests":
        return RequestsTransport(config, clock)
    if backend == "fast":
        return FastTransport(config, clock)
    raise ValueError(f"http client must be one of {', '.join(HTTP_BACKENDS)}, got {backend!r}")
