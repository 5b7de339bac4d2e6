"""Deadline propagation on the client side: what X-Request-Deadline-Ms carries on the wire (both
transports), the target's fast 504 as the failure kind `expired`, and a timeout per attempt."""

from __future__ import annotations

import dataclasses
import socket

import gevent
import pytest
from gevent.server import StreamServer

from mitigations.core import Call, DeadlineExceeded, FakeClock, MonotonicClock, Pipeline
from mitigations.retry import Retry, RetryConfig
from mitigations.timeout import (
    DEADLINE_HEADER,
    AttemptTimeout,
    AttemptTimeoutConfig,
    Timeouts,
    ms_left,
)
from mitigations.transport import (
    HTTP_BACKENDS,
    TransportConfig,
    classify_status,
    make_transport,
    with_deadline,
)
from tests.policy_kit import answer

CLOCK = MonotonicClock()


class HeadRecorder:
    """A loopback server that keeps every request head it reads and answers 200 at once."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        self.server = StreamServer(("127.0.0.1", 0), self._serve)

    def _serve(self, conn: socket.socket, _address: object) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        self.heads.append(data.split(b"\r\n\r\n")[0])
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    def header(self, index: int) -> str | None:
        for line in self.heads[index].split(b"\r\n")[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == DEADLINE_HEADER.lower():
                return value.strip()
        return None

    def __enter__(self) -> HeadRecorder:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(timeout=1)


@pytest.mark.slow
@pytest.mark.parametrize("backend", HTTP_BACKENDS)
def test_the_header_carries_the_time_left_capped_by_the_read_timeout(backend):
    with HeadRecorder() as recorder:
        url = f"http://127.0.0.1:{recorder.server.server_port}"
        transport = make_transport(
            backend, TransportConfig(base_url=url, timeouts=Timeouts(connect=1, read=0.8)), CLOCK
        )
        try:
            now = CLOCK.now()
            for deadline_in in (None, 0.5, 3.0, 0.5):  # the last repeats one: a cached head, a new value
                call = Call("GET", "/doWork", launched_at=now - 0.2,
                            deadline=None if deadline_in is None else now + deadline_in)  # fmt: skip
                assert transport.send(call).ok
        finally:
            transport.close()
    assert recorder.header(0) is None  # no deadline, no header
    assert 480 <= int(recorder.header(1)) <= 500  # the time left on the deadline, from now
    assert recorder.header(2) == "800"  # the read timeout is shorter: the client waits no longer
    assert 450 <= int(recorder.header(3)) <= 500
    assert all(head.count(DEADLINE_HEADER.encode()) <= 1 for head in recorder.heads)


def test_the_header_is_absent_without_a_deadline_capped_by_the_read_timeout_and_never_negative():
    call = Call("GET", "/", launched_at=10.0)
    assert ms_left(call.remaining(10.0), 1.0) is None
    call.deadline = 11.5
    assert ms_left(call.remaining(10.0), None) == 1500
    assert ms_left(call.remaining(10.0), 0.25) == 250
    assert ms_left(call.remaining(12.0), None) == 0


def test_the_header_goes_last_in_the_head():
    head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    assert with_deadline(head, None) is head
    assert with_deadline(head, 42) == b"GET / HTTP/1.1\r\nHost: x\r\nX-Request-Deadline-Ms: 42\r\n\r\n"


@pytest.fixture(scope="module")
def dropping():
    from tests.conftest import launch_target

    server = launch_target(drop_expired=True)
    yield server.url
    server.stop()


@pytest.mark.parametrize("backend", HTTP_BACKENDS)
@pytest.mark.slow
def test_a_dropped_request_is_the_failure_kind_expired(backend, dropping):
    transport = make_transport(backend, TransportConfig(base_url=dropping), CLOCK)
    try:
        # A deadline already spent, sent as the header itself (the call has none, so the transport adds none).
        call = Call("GET", "/doWork", launched_at=CLOCK.now(), headers={DEADLINE_HEADER: "0"})
        outcome = transport.send(call)
        fine = transport.send(Call("GET", "/doWork", launched_at=CLOCK.now(), deadline=CLOCK.now() + 2))
    finally:
        transport.close()
    assert outcome.status == 504 and outcome.kind == "expired"
    assert outcome.is_server_failure and outcome.reached_wire
    assert fine.ok


def test_only_a_marked_504_is_expired():
    assert classify_status(504, expired=True).kind == "expired"
    assert classify_status(504).kind == "5xx"  # a gateway's 504 stays a plain 5xx
    assert classify_status(200, expired=True) is None


# -- a timeout per attempt ------------------------------------------------------------------------------


def test_every_attempt_gets_a_fresh_timeout_and_retries_use_them_all():
    """NaiveRetryClient's pipeline: immediate retries around a 1 s timeout per attempt. A server that
    never answers costs 3 attempts of 1 s each, and the server is told 1000 ms each time."""
    clock = FakeClock()
    seen: list[tuple[float, float | None]] = []

    class Silent:
        def send(self, call: Call):
            seen.append((clock.now(), call.deadline))
            clock.advance(call.remaining(clock.now()))
            return answer(clock, error=DeadlineExceeded())(call)

    retry = Retry(dataclasses.replace(RetryConfig.naive(3)))
    pipeline = Pipeline([retry, AttemptTimeout(AttemptTimeoutConfig(1.0))], Silent(), clock=clock)
    outcome = pipeline.execute(Call("GET", "/doWork", launched_at=clock.now()))
    assert outcome.kind == "deadline"
    starts = [start for start, _ in seen]
    assert starts == pytest.approx([1000.0, 1001.0, 1002.0])
    assert [deadline - start for start, deadline in seen] == pytest.approx([1.0, 1.0, 1.0])
    assert retry.attempts == 3


def test_an_attempt_never_outlives_the_calls_own_deadline():
    clock = FakeClock()
    got: list[Call] = []
    policy = AttemptTimeout(AttemptTimeoutConfig(1.0))
    policy.bind(clock, policy.events)

    def proceed(call: Call):
        got.append(call)
        return answer(clock)(call)

    policy.execute(Call("GET", "/", launched_at=clock.now(), deadline=clock.now() + 0.4), proceed)
    assert got[0].deadline == pytest.approx(clock.now() + 0.4)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "1", None, True])
def test_a_bad_attempt_timeout_is_refused_with_one_line(bad):
    with pytest.raises(ValueError, match=r"^AttemptTimeoutConfig.timeout must be a number of seconds > 0"):
        AttemptTimeoutConfig(bad)


def test_gevent_is_in_use():  # the suite is monkey-patched; the recorder above relies on it
    assert socket.socket is gevent.socket.socket
