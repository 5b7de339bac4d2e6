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

The modules by idea: `transport_base` (config, backend names, the deadline timer), `wire_failures`
(classifying what came back), `requests_transport` and `fast_transport` (one per backend). This module
picks a backend by name and re-exports the rest, so `from mitigations.transport import ...` still works.
"""

from __future__ import annotations

from mitigations.core import SYSTEM_CLOCK, Clock
from mitigations.fast_transport import (
    REQUEST_CACHE_SIZE,
    TRACE_HEADERS,
    FastTransport,
    with_deadline,
    with_headers,
)
from mitigations.requests_transport import RequestsTransport
from mitigations.transport_base import HTTP_BACKENDS, HttpBackend, TransportConfig, arm_deadline
from mitigations.wire_failures import CLIENT_ERRNOS, classify_exception, classify_status, failure_outcome

__all__ = [
    "CLIENT_ERRNOS",
    "HTTP_BACKENDS",
    "REQUEST_CACHE_SIZE",
    "TRACE_HEADERS",
    "FastTransport",
    "HttpBackend",
    "RequestsTransport",
    "TransportConfig",
    "arm_deadline",
    "classify_exception",
    "classify_status",
    "failure_outcome",
    "make_transport",
    "with_deadline",
    "with_headers",
]


def make_transport(backend: HttpBackend, config: TransportConfig, clock: Clock = SYSTEM_CLOCK):
    """The transport for a backend name, as the `--http-client` option spells it."""
    if backend == "requests":
        return RequestsTransport(config, clock)
    if backend == "fast":
        return FastTransport(config, clock)
    raise ValueError(f"http client must be one of {', '.join(HTTP_BACKENDS)}, got {backend!r}")
