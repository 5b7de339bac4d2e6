"""Blame lands where it belongs: what the client's own machine or queues caused never counts against the
server. Real sockets, a real target server, and (for the rules themselves) a fake clock."""

from __future__ import annotations

import errno
import gc
import os
import resource
from collections import Counter

import pytest
import urllib3

from mitigations.breaker import CircuitBreaker, CircuitBreakerConfig
from mitigations.core import (
    Call,
    ClientError,
    FakeClock,
    MonotonicClock,
    Outcome,
    Pipeline,
    QueuedPastDeadline,
)
from mitigations.socket_pool import SocketPool, SocketPoolConfig
from mitigations.timeout import Timeouts
from mitigations.transport import HTTP_BACKENDS, TransportConfig, classify_exception, make_transport
from tests.open_loop import offer

CLOCK = MonotonicClock()


def _lowest_free_fd() -> int:
    probe = os.dup(0)
    os.close(probe)
    return probe


# -- a local OSError is the client's, not the server's --------------------------------------------------


@pytest.mark.parametrize("backend", HTTP_BACKENDS)
@pytest.mark.slow
def test_out_of_file_descriptors_is_a_client_error_that_never_opens_the_breaker(backend, start_target):
    server = start_target()
    breaker = CircuitBreaker(CircuitBreakerConfig(mode="recent-error"))  # opens on any one server failure
    transport = make_transport(backend, TransportConfig(server.url, timeouts=Timeouts(connect=2)), CLOCK)
    pipeline = Pipeline([breaker], transport, clock=CLOCK)
    seen: Counter[str] = Counter()
    pipeline.events.on("wire", lambda outcome: seen.update(["wire"]))
    pipeline.events.on("shed", lambda outcome: seen.update(["shed:" + outcome.error.cause]))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # The next descriptor this process opens would be the lowest free one: cap the table just below it.
    # A garbage collection inside the call could close a socket an earlier test left for it, free a lower
    # descriptor and let the call open one after all: collect first, and not during the call.
    gc.collect()
    gc.disable()
    resource.setrlimit(resource.RLIMIT_NOFILE, (_lowest_free_fd(), hard))
    try:
        starved = pipeline.execute(Call("GET", "/doWork", launched_at=CLOCK.now()))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        gc.enable()
    assert starved.kind == "shed:client-error" and isinstance(starved.error, ClientError), starved
    assert starved.shed and not starved.is_server_failure
    assert seen == {"shed:client-error": 1}  # reported as held back by the client, not as a wire failure
    assert breaker.state == "closed"
    assert pipeline.execute(Call("GET", "/doWork", launched_at=CLOCK.now())).ok  # descriptors back: fine
    transport.close()


@pytest.mark.parametrize("code", [errno.EMFILE, errno.ENFILE, errno.EADDRNOTAVAIL, errno.ENOBUFS])
def test_local_socket_errnos_are_client_errors_however_the_http_library_wraps_them(code):
    local = OSError(code, os.strerror(code))
    # urllib3 wraps a failed socket()/connect() in NewConnectionError, a subclass of ConnectTimeoutError.
    wrapped = urllib3.exceptions.NewConnectionError(None, "Failed to establish a new connection")
    wrapped.__cause__ = local
    for exc in (local, wrapped):
        assert isinstance(classify_exception(exc), ClientError), exc
    assert classify_exception(ConnectionRefusedError(errno.ECONNREFUSED, "refused")).kind == "connect-refused"


# -- the deadline: a call the client queued too long is shed, never sent to fail -----------------------------


class Recorder:
    """A transport that answers at once and remembers what reached it."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock, self.sent = clock, []

    def send(self, call: Call) -> Outcome:
        self.sent.append(call)
        return Outcome(call=call, finished_at=self.clock.now(), status=200)


@pytest.mark.parametrize(
    ("spent", "share", "sent"),
    [(0.09, 0.5, True), (0.11, 0.5, False), (0.11, 0.25, True), (0.16, 0.25, False), (0.19, 0.0, True)],
)
def test_an_attempt_goes_on_the_wire_only_with_its_share_of_the_deadline_left(spent, share, sent):
    clock = FakeClock()
    wire = Recorder(clock)
    pipeline = Pipeline([], wire, clock=clock, total_timeout=0.2, min_wire_share=share)
    shed: list[Outcome] = []
    pipeline.events.on("shed", shed.append)
    outcome = pipeline.execute(Call("GET", "/", launched_at=clock.now() - spent))  # queued upstream
    assert outcome.call.send_by == pytest.approx(outcome.call.deadline - share * 0.2)
    assert (len(wire.sent) == 1) is sent
    if not sent:
        assert isinstance(outcome.error, QueuedPastDeadline) and shed == [outcome]


@pytest.mark.parametrize("share", [-0.1, 1.0, 2, True, "half"])
def test_a_bad_wire_share_is_one_line_naming_it(share):
    with pytest.raises(ValueError, match="min_wire_share") as caught:
        Pipeline([], Recorder(FakeClock()), min_wire_share=share)
    assert "\n" not in str(caught.value)


@pytest.mark.slow
@pytest.mark.parametrize("backend", HTTP_BACKENDS)
def test_a_healthy_server_behind_one_socket_never_opens_the_breaker(backend, start_target):
    """The issue's case: every answer is 200 in ~50 ms, but one socket carries only ~20/s, so at 30/s
    calls queue in the client and most of a 200 ms deadline goes by before they reach the wire. Sent
    anyway, they would fail on the wire (~33 ms left for a 50 ms answer) and open the breaker."""
    server = start_target(task_delay_ms=50, sync_work_ms=0)
    # The rate breaker with the Locust options' defaults (50 % of calls in 10 s, at least 20). Before the
    # fix it opened within 3 s on both clients. (The recent-error mode opens on any single failure, so
    # one 100 ms stall of this shared 2-core machine would open it: tests/test_clients_e2e.py checks that
    # mode with a longer deadline.)
    breaker = CircuitBreaker(
        CircuitBreakerConfig(mode="rate", window_type="time", window_size=10.0, minimum_calls=20)
    )
    config = TransportConfig(server.url, max_connections=1, timeouts=Timeouts(connect=3, read=1, total=0.2))
    transport = make_transport(backend, config, CLOCK)
    pipeline = Pipeline(
        [breaker, SocketPool(SocketPoolConfig(max_sockets=1))], transport, clock=CLOCK, total_timeout=0.2
    )
    transitions: list[tuple[str, str]] = []
    pipeline.events.on("state", lambda _policy, old, new: transitions.append((old, new)))
    kinds = Counter(outcome.kind for outcome in offer(pipeline, rate=30, seconds=3))
    transport.close()
    assert transitions == [] and breaker.rejected == 0, (transitions, kinds)
    assert kinds["deadline"] <= 2, kinds  # sent with >= 100 ms left for a 50 ms answer: it arrives
    assert set(kinds) <= {"ok", "shed:deadline", "deadline"}, kinds
    # The socket is kept busy with calls that can succeed: close to its ~20/s for 3 s.
    assert kinds["ok"] >= 45 and kinds["shed:deadline"] >= 15, kinds
