"""The geventhttpclient transport, as Locust's `FastHttpUser` sends (about 4x cheaper per request)."""

from __future__ import annotations

import dataclasses

from geventhttpclient.client import HTTPClient
from geventhttpclient.response import HTTPSocketPoolResponse

from mitigations.checked_url import URLRefused, request_target
from mitigations.core import (
    SYSTEM_CLOCK,
    Call,
    ClientError,
    Clock,
    ConnectTimeout,
    DeadlineExceeded,
    Outcome,
    ResponseReset,
)
from mitigations.outbound import PinnedConnectionPool
from mitigations.timeout import DEADLINE_HEADER, EXPIRED_HEADER, ms_left
from mitigations.transport_base import HttpBackend, TransportConfig, arm_deadline
from mitigations.wire_failures import classify_status, failure_outcome

REQUEST_CACHE_SIZE = 256  # distinct body-less requests a FastTransport keeps built
# W3C trace context (`mitigations.tracing`): a new value every attempt, so FastTransport sends them after
# its cached request head, as it does the deadline.
TRACE_HEADERS = ("traceparent", "tracestate")
_DEADLINE_LINE = DEADLINE_HEADER.encode("ascii") + b": %d\r\n\r\n"  # and the blank line ending the head


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
        remaining = call.remaining(now)
        if remaining == 0:  # `Timeouts.expired`, from the seconds left read once
            return Outcome(call=call, finished_at=now, error=DeadlineExceeded())
        pool = self._client._connection_pool
        try:
            head = self._request_bytes(call)
        except URLRefused:
            return Outcome(call=call, finished_at=now, error=ClientError())  # never sent: not the server's
        request = with_deadline(head, ms_left(remaining, self.config.timeouts.read))
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


def with_deadline(request: bytes, left_ms: int | None) -> bytes:
    """A built request head with `DEADLINE_HEADER: left_ms` added as its last header (the head is
    cached without it, because the value changes with every attempt)."""
    if left_ms is None:
        return request
    return request[:-2] + _DEADLINE_LINE % left_ms  # the head ends with the blank line's CRLF


def with_headers(request: bytes, pairs: list[tuple[str, str]]) -> bytes:
    """A built request head with `pairs` added as its last headers."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in pairs)
    return request[:-2] + extra.encode("latin-1") + b"\r\n"


def _bodiless(method: str, status: int) -> bool:
    """A response that has no body whatever its Content-Length says (RFC 9110 §6.4.1)."""
    return method.upper() == "HEAD" or status in (204, 304) or 100 <= status < 200
