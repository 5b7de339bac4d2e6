"""The requests + urllib3 transport, as Locust's `HttpUser` sends."""

from __future__ import annotations

import requests
import urllib3

from mitigations.checked_url import URLRefused
from mitigations.core import SYSTEM_CLOCK, Call, ClientError, Clock, DeadlineExceeded, Outcome
from mitigations.outbound import pinned_session
from mitigations.timeout import DEADLINE_HEADER, EXPIRED_HEADER, ms_left
from mitigations.transport_base import HttpBackend, TransportConfig, arm_deadline
from mitigations.wire_failures import classify_status, failure_outcome

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
        remaining = call.remaining(now)
        if remaining == 0:  # `Timeouts.expired`, from the seconds left read once
            return Outcome(call=call, finished_at=now, error=DeadlineExceeded())
        try:
            url = self.config.target.join(call.path).text
        except URLRefused:
            return Outcome(call=call, finished_at=now, error=ClientError())  # never sent: not the server's
        timeout = self.config.timeouts.for_call(call, now)
        headers = dict(call.headers)
        left = ms_left(remaining, self.config.timeouts.read)
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
