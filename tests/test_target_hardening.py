"""The target defends itself (issue 10): slow and idle clients, a wedging request, work for clients that
have gone, malformed HTTP, and who may use /admin. Real servers on loopback, real sockets.

Each test reproduces a finding of the issue and failed on the code before the fix.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time

import gevent
import gevent.socket
import pytest
import requests

from tests.conftest import ROOT, TargetServer, launch_target
from tests.raw_client import exchange

HOST = b"Host: 127.0.0.1\r\n"


@pytest.fixture(scope="module")
def server():
    """One server for the quick cases: short header and idle timeouts so that held sockets end soon."""
    server = launch_target(header_timeout_s=1, idle_timeout_s=1)
    yield server
    server.stop()
    server.log_path.unlink(missing_ok=True)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


# -- finding 7: no 500s; every /doWork request ends in exactly one outcome ------------------------------

ADMIN_POST = b"POST /admin/faults HTTP/1.1\r\n" + HOST + b"Content-Type: application/json\r\n"
RAW_CASES = {
    "raw 0xFF in the query": (b"GET /doWork?a=\xff HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    "percent-encoded 0xFF": (b"GET /doWork?sync_work_ms=%FF HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    "huge Content-Length": (ADMIN_POST + b"Content-Length: 99999999999999999999\r\n\r\n{}", 413),
    "non-hex chunk size": (ADMIN_POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", 400),
    "negative chunk size": (ADMIN_POST + b"Transfer-Encoding: chunked\r\n\r\n-5\r\n{}\r\n0\r\n\r\n", 400),
    "2^64 chunk size": (
        ADMIN_POST + b"Transfer-Encoding: chunked\r\n\r\n10000000000000000\r\n{}\r\n0\r\n\r\n",
        400,
    ),
    "TLS ClientHello": (bytes.fromhex("16030100c4010000c00303") + bytes(40), 400),
    "HTTP/0.9": (b"GET /\r\n", 400),
    "request line over 8 KiB": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414),
    "a 70 KB header": (b"GET /ping HTTP/1.1\r\n" + HOST + b"X: " + b"a" * 70_000 + b"\r\n\r\n", 431),
    "150 headers": (
        b"GET /ping HTTP/1.1\r\n" + b"".join(b"X%d: y\r\n" % i for i in range(150)) + b"\r\n",
        431,
    ),
    "bad Content-Length": (ADMIN_POST + b"Content-Length: 5_0\r\n\r\n{}", 400),
    "two Content-Lengths": (ADMIN_POST + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400),
    # held sockets: the request never completes, so header_timeout_s (1 s here) ends it with a 408
    "a bare CR": (b"GET /ping HTTP/1.1\r", 408),
    "short body": (ADMIN_POST + b"Content-Length: 100\r\n\r\n{}", 408),
    "unterminated chunk": (ADMIN_POST + b"Transfer-Encoding: chunked\r\n\r\n5\r\nab", 408),
    "headers never end": (b"GET /ping HTTP/1.1\r\n" + HOST, 408),
}


@pytest.mark.parametrize("name", list(RAW_CASES))
@pytest.mark.slow
def test_malformed_http_is_a_4xx_and_a_closed_connection(server, name):
    data, expected = RAW_CASES[name]
    answer, closed, seconds = exchange(server.port, data)
    assert answer, f"{name}: no answer"
    assert status_of(answer) == expected, answer[:200]
    assert b"Traceback" not in answer and b"Internal Server Error" not in answer
    if expected != 400 or not data.startswith(b"GET /doWork"):
        assert closed and seconds < 3, f"{name}: held for {seconds:.1f} s"


@pytest.mark.parametrize(
    "path",
    [
        "/admin/faults",
        "/admin/config",
    ],
)
@pytest.mark.slow
def test_deeply_nested_json_is_a_400(server, path):
    body = "[" * 1000 + "]" * 1000
    response = requests.post(
        server.url + path, data=body, headers={"Content-Type": "application/json"}, timeout=5
    )
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["error"]


@pytest.mark.slow
def test_every_do_work_request_ends_in_exactly_one_outcome(server):
    server.admin("POST", "/reset")
    for query in ["", "a=\xff", "sync_work_ms=%FF", "sync_work_ms=1&sync_work_ms=2", "expansion=2", "x=1"]:
        raw = f"GET /doWork?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode(
            "latin-1"
        )
        exchange(server.port, raw)
    stats = server.stats()
    outcomes = ("completed", "rejected", "errors", "bad_requests", "abandoned")
    assert stats["requests_total"] == 6
    assert sum(stats[f"{name}_total"] for name in outcomes) == 6
    assert (stats["completed_total"], stats["bad_requests_total"]) == (2, 4)


# -- finding 11: lenient query parsing ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("sync_work_ms=1&sync_work_ms=2", "sync_work_ms: given twice"),
        ("sync_work_ms=%EF%BC%95", "sync_work_ms: must be a number"),  # a full-width 5
        ("sync_work_ms=1_0", "sync_work_ms: must be a number"),
        ("sync_work_ms=nan", "sync_work_ms: must be a number"),
        ("task_delay_ms=inf", "task_delay_ms: must be a number"),
    ],
)
@pytest.mark.slow
def test_lenient_query_values_are_refused(server, query, needle):
    response = requests.get(f"{server.url}/doWork?{query}", timeout=5)
    assert response.status_code == 400
    assert needle in response.json()["error"]


# -- finding 5: one in-range request must not wedge the target ------------------------------------------


@pytest.mark.slow
def test_a_wedging_request_is_refused_naming_the_cap(server):
    response = requests.get(
        server.url + "/doWork?expansion=1000&sync_work_ms=10000&task_delay_ms=0", timeout=5
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert "expansion x sync_work_ms = 1000 x 10000 = 10000000 ms" in error and "cap of 1000 ms" in error
    status, body = server.admin("POST", "/config", {"expansion": 1000, "sync_work_ms": 10000})
    assert status == 400 and "max_work_ms" in body["error"]
    assert server.stats()["config"]["sync_work_ms"] == 10.0
    assert requests.get(server.url + "/ping", timeout=1).status_code == 200


@pytest.mark.slow
def test_sigterm_is_honoured_after_a_wedge_attempt_and_during_the_largest_allowed_request():
    """The seed's server took `expansion=1000&sync_work_ms=10000` and then ignored SIGTERM for hours."""
    target = launch_target()
    try:
        wedge = b"GET /doWork?expansion=1000&sync_work_ms=10000&task_delay_ms=0 HTTP/1.1\r\n" + HOST + b"\r\n"
        largest = b"GET /doWork?expansion=4&sync_work_ms=250&task_delay_ms=0 HTTP/1.1\r\n" + HOST + b"\r\n"
        with socket.create_connection(("127.0.0.1", target.port), timeout=5) as sock:
            sock.sendall(wedge + largest)
            time.sleep(0.1)
            start = time.monotonic()
            target.proc.send_signal(signal.SIGTERM)
            try:
                target.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                pytest.fail("SIGTERM not honoured within 3 s")
            assert time.monotonic() - start < 2.5
    finally:
        target.stop()
        target.log_path.unlink(missing_ok=True)


# -- findings 3 and 10: who may use /admin ----------------------------------------------------------------


def admin_post(server: TargetServer, headers: dict[str, str], body: str = '{"kind": "error", "rate": 0.5}'):
    return requests.post(server.url + "/admin/faults", data=body, headers=headers, timeout=5)


@pytest.mark.parametrize(
    ("headers", "status", "needle"),
    [
        ({"Content-Type": "text/plain", "Origin": "http://evil.example"}, 403, "cross-site"),
        ({"Content-Type": "text/plain"}, 415, "Content-Type: application/json"),
        ({"Content-Type": "application/json", "Origin": "http://evil.example"}, 403, "cross-site"),
        ({"Content-Type": "application/json", "Origin": "null"}, 403, "cross-site"),
        ({"Content-Type": "application/json", "Host": "evil.example"}, 403, "loopback host"),
        ({"Content-Type": "application/json", "Host": "127.0.0.1.evil.example:80"}, 403, "loopback host"),
    ],
)
@pytest.mark.slow
def test_admin_refuses_cross_site_and_rebinding_requests(server, headers, status, needle):
    server.admin("DELETE", "/faults")
    response = admin_post(server, headers)
    assert response.status_code == status
    assert needle in response.json()["error"]
    assert server.admin("GET", "/faults")[1]["faults"] == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "application/json"},
        {"Content-Type": "application/json; charset=utf-8", "Origin": "http://127.0.0.1:8089"},
        {"Content-Type": "application/json", "Host": "localhost:3000", "Origin": "http://localhost:8089"},
        {"Content-Type": "application/json", "Host": "[::1]:3000"},
    ],
)
@pytest.mark.slow
def test_admin_still_answers_loopback_callers(server, headers):
    server.admin("DELETE", "/faults")
    assert admin_post(server, headers).status_code == 201


def ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::", 0))
        return True
    except OSError:
        return False


@pytest.mark.slow
def test_ipv4_mapped_loopback_may_use_admin_on_a_dual_stack_listener():
    if not ipv6_available():
        pytest.fail("this test needs IPv6 on loopback (bind to ::)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "target_server", "--host", "::", "--port", str(port), "--quiet"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/ping", timeout=1)
                break
            except requests.RequestException:
                assert time.monotonic() < deadline and proc.poll() is None, "target did not start"
                time.sleep(0.1)
        response = requests.post(
            f"http://127.0.0.1:{port}/admin/faults", json={"kind": "error", "rate": 0.1}, timeout=5
        )
        assert response.status_code == 201, response.text  # the peer is ::ffff:127.0.0.1
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- finding 4: idle and slowloris connections ----------------------------------------------------------


@pytest.mark.slow
def test_ping_and_do_work_answer_under_slowloris_and_idle_connections(start_target):
    """320 slowloris + 256 idle sockets against max_sockets 256 for ~10 s; a normal client still gets in."""
    target = start_target()
    hold_until = time.monotonic() + 10

    def attacker(slow: bool) -> None:
        try:
            sock = gevent.socket.create_connection(("127.0.0.1", target.port), timeout=5)
        except OSError:
            return
        try:
            if slow:
                sock.sendall(b"GET /ping HTTP/1.1\r\n")
            for byte in b"X-Slow: " + b"a" * 100:
                if time.monotonic() > hold_until:
                    return
                gevent.sleep(1.0)
                if slow:
                    sock.sendall(bytes([byte]))
        except OSError:
            return  # the server ended it
        finally:
            sock.close()

    attack = [gevent.spawn(attacker, True) for _ in range(320)] + [
        gevent.spawn(attacker, False) for _ in range(256)
    ]
    try:
        gevent.sleep(8)  # the attack is in full swing
        for path in ("/ping", "/doWork"):
            start = time.monotonic()
            with gevent.socket.create_connection(("127.0.0.1", target.port), timeout=2) as sock:
                sock.settimeout(2)
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
                answer = sock.recv(4096)
            assert status_of(answer) == 200 and time.monotonic() - start < 2, path
    finally:
        gevent.joinall(attack, timeout=5)
        gevent.killall(attack)
    dropped = target.stats()["dropped_total"]
    assert dropped["evicted"] + dropped["idle_timeout"] + dropped["header_timeout"] >= 256, dropped


# -- finding 6: work whose client has gone is not done ---------------------------------------------------


@pytest.mark.slow
def test_lag_recovers_within_3_s_after_an_overload_of_clients_that_hang_up(start_target):
    """400 requests in 0.4 s (~4 s of CPU work), each client hanging up after 150 ms, as a client with a
    request timeout does; the seed's server did all the work for nobody and stayed over 70 ms for long."""
    target = start_target()

    def impatient_client() -> None:
        try:
            with gevent.socket.create_connection(("127.0.0.1", target.port), timeout=2) as sock:
                sock.sendall(b"GET /doWork HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                sock.settimeout(0.15)
                sock.recv(1024)
        except OSError:
            pass

    clients = []
    for _ in range(400):
        clients.append(gevent.spawn(impatient_client))
        gevent.sleep(0.001)
    gevent.joinall(clients, timeout=10)
    ended = time.monotonic()
    lag = None
    while time.monotonic() - ended < 3.0:
        try:
            lag = requests.get(target.url + "/stats", timeout=0.5).json()["lag_ms"]
        except requests.RequestException:
            lag = None
        if lag is not None and lag < 70:
            break
        time.sleep(0.05)
    assert lag is not None and lag < 70, f"lag {lag} ms 3 s after the clients left"
    stats = target.stats()
    settle = time.monotonic() + 5
    while stats["in_flight"] and time.monotonic() < settle:  # the last few may still be in the server
        time.sleep(0.1)
        stats = target.stats()
    assert stats["abandoned_total"] > 100, json.dumps(stats)[:400]
    assert stats["in_flight"] == 0
    assert stats["requests_total"] == stats["completed_total"] + stats["abandoned_total"]
