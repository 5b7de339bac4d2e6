"""Both transports against the real target server: every way a request can end has one stable kind."""

from __future__ import annotations

import socket

import gevent
import pytest

from mitigations.core import Call, MonotonicClock
from mitigations.timeout import Timeouts
from mitigations.transport import HTTP_BACKENDS, TransportConfig, classify_status, make_transport

CLOCK = MonotonicClock()


def send(backend: str, url: str, path: str = "/doWork", deadline_in: float | None = None, **config):
    transport = make_transport(backend, TransportConfig(base_url=url, **config), CLOCK)
    now = CLOCK.now()
    call = Call("GET", path, launched_at=now, deadline=None if deadline_in is None else now + deadline_in)
    try:
        return transport.send(call)
    finally:
        transport.close()


@pytest.fixture
def free_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def faulty():
    """One server per fault kind, started once for the module."""
    from tests.conftest import launch_target

    servers = {
        "ok": launch_target(),
        "error": launch_target(fault=["error:rate=1"]),
        "reset": launch_target(fault=["reset:rate=1"]),
        "hang": launch_target(fault=["hang:rate=1"]),
        "busy": launch_target(fault=["outage:duration_s=600"]),
    }
    yield {name: server.url for name, server in servers.items()}
    for server in servers.values():
        server.stop()


@pytest.mark.parametrize("backend", HTTP_BACKENDS)
@pytest.mark.slow
def test_success_carries_status_length_and_the_server_lag_header(backend, faulty):
    outcome = send(backend, faulty["ok"])
    assert outcome.ok and outcome.status == 200 and outcome.kind == "ok"
    assert outcome.length > 0
    assert outcome.header("x-server-lag-ms") is not None
    assert 0 < outcome.latency < 5


@pytest.mark.parametrize("backend", HTTP_BACKENDS)
@pytest.mark.parametrize(
    ("server", "kind"),
    [("error", {"5xx"}), ("reset", {"reset", "reset-mid-response"}), ("busy", {"503"})],
)
@pytest.mark.slow
def test_server_failures_are_classified(backend, faulty, server, kind):
    # The reset fault sends the head and part of the body, then RST at once. A RST makes the kernel drop
    # what the client has not read yet, so the client sees either kind (tests/test_blame.py pins each).
    outcome = send(backend, faulty[server], timeouts=Timeouts(connect=2, read=2))
    assert outcome.kind in kind, outcome
    assert outcome.is_server_failure and outcome.reached_wire


@pytest.mark.parametrize("backend", HTTP_BACKENDS)
@pytest.mark.slow
def test_a_hung_server_ends_in_a_read_timeout(backend, faulty):
    outcome = send(backend, faulty["hang"], timeouts=Timeouts(connect=1, read=0.3))
    assert outcome.kind == "read-timeout"
    assert 0.25 < outcome.latency < 2


@pytest.mark.parametrize("backend", HTTP_BACKENDS)
@pytest.mark.slow
def test_the_deadline_ends_a_hung_call_on_the_wire(backend, faulty):
    outcome = send(backend, faulty["hang"], deadline_in=0.3)
    assert outcome.kind == "deadline"
    assert 0.25 < outcome.latency < 2


@pytest.mark.parametrize("backend", HTTP_BACKENDS)
def test_nothing_listening_is_a_refused_connect(backend, free_port):
    outcome = send(backend, f"http://127.0.0.1:{free_port}", timeouts=Timeouts(connect=1))
    assert outcome.kind == "connect-refused"


@pytest.mark.parametrize("backend", HTTP_BACKENDS)
@pytest.mark.slow
def test_keep_alive_reuses_one_socket_and_close_opens_one_per_request(backend, start_target):
    server = start_target()
    for keep_alive, expected in ((True, 1), (False, 5)):
        before = server.stats()["sockets_accepted_total"]
        transport = make_transport(backend, TransportConfig(server.url, keep_alive=keep_alive), CLOCK)
        for _ in range(5):
            assert transport.send(Call("GET", "/ping", launched_at=CLOCK.now())).ok
        transport.close()
        # -1: our own /stats request above opened a socket too.
        assert server.stats()["sockets_accepted_total"] - before - 1 == expected


@pytest.mark.parametrize("backend", HTTP_BACKENDS)
@pytest.mark.slow
def test_one_shared_transport_serves_many_greenlets_at_once(backend, faulty):
    transport = make_transport(backend, TransportConfig(faulty["ok"]), CLOCK)
    jobs = [gevent.spawn(transport.send, Call("GET", "/doWork", launched_at=CLOCK.now())) for _ in range(20)]
    gevent.joinall(jobs, timeout=10)
    assert all(job.value is not None and job.value.ok for job in jobs)
    transport.close()


def test_status_classes():
    assert classify_status(200) is None and classify_status(302) is None
    assert classify_status(404).kind == "4xx"
    assert classify_status(503).kind == "503"
    assert classify_status(502).kind == "5xx"


def test_a_bad_host_is_refused_at_construction():
    with pytest.raises(ValueError, match="'localhost:3000' is not a URL Hammerlab sends to"):
        TransportConfig("localhost:3000")


@pytest.mark.parametrize("backend", HTTP_BACKENDS)
@pytest.mark.slow
def test_a_head_request_with_a_content_length_and_no_body_is_ok(backend, faulty):
    config = TransportConfig(faulty["ok"], timeouts=Timeouts(connect=2, read=2))
    transport = make_transport(backend, config, CLOCK)
    try:
        outcome = transport.send(Call("HEAD", "/ping", launched_at=CLOCK.now()))
    finally:
        transport.close()
    assert outcome.ok and outcome.status == 200 and outcome.length == 0, outcome
