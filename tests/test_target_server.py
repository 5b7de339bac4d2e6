"""The target server over real sockets: endpoints, /stats, /admin, every fault mode, the log, Nagle."""

from __future__ import annotations

import http.client
import re
import socket
import statistics
import time

import pytest
import requests

from tests.conftest import TargetServer, launch_target

pytestmark = pytest.mark.slow  # each test starts a real server or a subprocess

STATS_KEYS = {
    "schema",
    "time",
    "uptime_s",
    "since_reset_s",
    "reset_count",
    "lag_ms",
    "max_lag_ms",
    "shed_probability",
    "sheddable_lag_ms",
    "sheddable_shed_probability",
    "in_flight",
    "concurrent",
    "sockets",
    "peak_lag_ms",
    "peak_in_flight",
    "peak_concurrent",
    "peak_sockets",
    "requests_total",
    "completed_total",
    "rejected_total",
    "errors_total",
    "bad_requests_total",
    "abandoned_total",
    "tasks_completed_total",
    "sockets_accepted_total",
    "sockets_closed_total",
    "expired_total",
    "work_cpu_ms_total",
    "wasted_cpu_ms_total",
    "wasted_work_ratio",
    "faulted_total",
    "dropped_total",
    "by_criticality_total",
    "faults",
    "overrides",
    "config",
    "status_port",
    "workers",
}


@pytest.fixture(scope="module")
def server():
    server = launch_target(seed=1)
    yield server
    server.stop()
    server.log_path.unlink(missing_ok=True)


@pytest.fixture(autouse=True)
def clean(request):
    """Every test starts with no faults, no overrides and zeroed totals on the shared server."""
    if "server" in request.fixturenames:
        shared: TargetServer = request.getfixturevalue("server")
        shared.admin("DELETE", "/faults")
        shared.admin("DELETE", "/config")
        shared.admin("POST", "/reset")
    yield


def get(server: TargetServer, path: str, timeout: float = 5.0) -> requests.Response:
    return requests.get(server.url + path, timeout=timeout)


def timed_get(server: TargetServer, path: str) -> tuple[requests.Response, float]:
    start = time.perf_counter()
    response = get(server, path)
    return response, time.perf_counter() - start


# -- endpoints --------------------------------------------------------------------------------------


def test_do_work_waits_then_works_and_answers_done(server):
    response, elapsed = timed_get(server, "/doWork")
    assert response.status_code == 200
    assert response.json() == {"result": "done!"}
    assert elapsed >= 0.029  # 20 ms wait + 10 ms spin
    stats = server.stats()
    assert (stats["requests_total"], stats["completed_total"], stats["tasks_completed_total"]) == (1, 1, 1)


def test_query_overrides_the_work_model(server):
    response, elapsed = timed_get(server, "/doWork?task_delay_ms=0&sync_work_ms=60&expansion=3")
    assert response.status_code == 200
    assert elapsed >= 0.18  # three tasks, each spinning 60 ms on the one loop
    assert server.stats()["tasks_completed_total"] == 3


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("sync_work_ms=-5", "sync_work_ms: must be a number from 0 to 10000, got '-5'"),
        ("expansion=lots", "expansion: must be an integer from 1 to 1000"),
        ("timeout=1", "timeout: unknown query parameter; allowed: expansion, task_delay_ms, sync_work_ms"),
    ],
)
def test_bad_query_is_a_400_with_a_json_error(server, query, needle):
    response = get(server, "/doWork?" + query)
    assert response.status_code == 400
    assert needle in response.json()["error"]
    assert server.stats()["bad_requests_total"] == 1


def test_ping_answers_at_once(server):
    response = get(server, "/ping")
    assert (response.status_code, response.text) == (200, "pong")
    assert server.stats()["requests_total"] == 0  # /ping is not work


@pytest.mark.parametrize("path", ["/ping", "/doWork", "/stats", "/metrics", "/admin/faults", "/nowhere"])
def test_every_response_carries_the_lag_header(server, path):
    response = get(server, path)
    assert float(response.headers["X-Server-Lag-Ms"]) >= 0.0


def test_unknown_paths_and_methods_are_json_errors(server):
    assert get(server, "/nowhere").status_code == 404
    assert "no such endpoint" in get(server, "/nowhere").json()["error"]
    response = requests.post(server.url + "/doWork", timeout=5)
    assert response.status_code == 405
    assert "not allowed" in response.json()["error"]


# -- /stats, /metrics, /admin/reset -----------------------------------------------------------------


def test_stats_reports_counters_and_the_effective_config(server):
    for _ in range(3):
        get(server, "/doWork")
    stats = server.stats()
    assert set(stats) == STATS_KEYS
    assert stats["requests_total"] == stats["completed_total"] == 3
    assert stats["rejected_total"] == stats["errors_total"] == 0
    assert stats["in_flight"] == 0 and stats["concurrent"] == 0
    assert stats["config"]["sync_work_ms"] == 10.0 and stats["config"]["port"] == server.port
    assert stats["workers"]["count"] == 1 and stats["workers"]["mode"] == "single"
    assert isinstance(stats["status_port"], int) and stats["status_port"] not in (0, server.port)
    assert stats["faulted_total"] == {"error": 0, "slow": 0, "reset": 0, "hang": 0, "outage": 0}


def test_reset_zeroes_the_totals(server):
    get(server, "/doWork")
    before = server.stats()
    status, body = server.admin("POST", "/reset")
    after = server.stats()
    assert status == 200 and body["reset_count"] == before["reset_count"] + 1
    assert before["requests_total"] == 1 and after["requests_total"] == 0 and after["completed_total"] == 0
    assert after["since_reset_s"] < before["since_reset_s"]


def test_peaks_catch_what_polling_misses_and_restart_at_reset(start_target):
    from concurrent.futures import ThreadPoolExecutor

    server = start_target(task_delay_ms=200)
    server.admin("POST", "/reset")
    with ThreadPoolExecutor(5) as pool:
        assert all(r.status_code == 200 for r in pool.map(lambda _: get(server, "/doWork"), range(5)))
    after = server.stats()
    assert after["in_flight"] == 0 and after["concurrent"] == 0
    assert after["peak_in_flight"] == 5 and after["peak_concurrent"] == 5
    assert after["peak_sockets"] >= 5
    server.admin("POST", "/reset")
    assert server.stats()["peak_in_flight"] == 0


def test_a_connection_close_request_is_answered_with_connection_close(server):
    response = requests.get(server.url + "/doWork", headers={"Connection": "close"}, timeout=5)
    assert response.headers["Connection"] == "close"
    ping = requests.get(server.url + "/ping", headers={"Connection": "close"}, timeout=5)
    assert ping.headers["Connection"] == "close"


def test_metrics_speak_prometheus(server):
    get(server, "/doWork")
    server.admin("POST", "/faults", {"kind": "error"})
    get(server, "/doWork")
    text = get(server, "/metrics").text
    assert re.search(r"^target_requests_total 2\.0$", text, re.M)
    assert re.search(r"^target_completed_total 1\.0$", text, re.M)
    assert re.search(r'^target_faulted_total\{kind="error"\} 1\.0$', text, re.M)
    assert re.search(r'^target_faults_active\{kind="error"\} 1\.0$', text, re.M)
    assert re.search(r"^target_event_loop_lag_seconds \d", text, re.M)
    assert re.search(r'^target_request_duration_seconds_count\{outcome="completed"\} 1\.0$', text, re.M)
    assert re.search(r'^target_request_duration_seconds_count\{outcome="error"\} 1\.0$', text, re.M)


# -- faults -----------------------------------------------------------------------------------------


def test_error_fault_answers_500_and_spares_ping(server):
    status, body = server.admin("POST", "/faults", {"kind": "error", "status": 502})
    assert status == 201 and body["fault"]["status"] == 502
    response = get(server, "/doWork")
    assert response.status_code == 502 and response.json() == {"error": "injected fault"}
    assert get(server, "/ping").status_code == 200
    stats = server.stats()
    assert stats["errors_total"] == stats["faulted_total"]["error"] == 1
    assert stats["completed_total"] == 0


def test_slow_fault_adds_delay(server):
    server.admin("POST", "/faults", {"kind": "slow", "delay_ms": 300})
    response, elapsed = timed_get(server, "/doWork")
    assert response.status_code == 200
    assert elapsed >= 0.3
    assert server.stats()["faulted_total"]["slow"] == 1


def test_reset_fault_resets_the_connection_mid_response(server):
    server.admin("POST", "/faults", {"kind": "reset"})
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /doWork HTTP/1.1\r\nHost: t\r\n\r\n")
        received = b""
        with pytest.raises(ConnectionResetError):
            while chunk := sock.recv(4096):
                received += chunk
    assert received == b"" or received.startswith(b"HTTP/1.1 200")  # headers may be lost to the RST
    with pytest.raises(requests.RequestException, match="reset by peer"):
        get(server, "/doWork")
    assert server.stats()["faulted_total"]["reset"] == 2


def test_hang_fault_never_answers_until_it_is_removed(server):
    body = server.admin("POST", "/faults", {"kind": "hang"})[1]
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /doWork HTTP/1.1\r\nHost: t\r\n\r\n")
        sock.settimeout(0.8)
        with pytest.raises(TimeoutError):
            sock.recv(4096)
        assert server.stats()["in_flight"] == 1
        assert server.admin("DELETE", "/faults/" + body["fault"]["id"]) == (200, {"removed": 1})
        sock.settimeout(3)
        assert sock.recv(4096) == b""  # closed without a response
    assert get(server, "/doWork").status_code == 200


def test_outage_fails_everything_for_its_duration_then_recovers(server):
    server.admin("POST", "/faults", {"kind": "outage", "duration_s": 1})
    response = get(server, "/doWork")
    assert response.status_code == 503 and response.json() == {"error": "outage"}
    assert response.headers["Retry-After"] == "1"
    time.sleep(1.1)
    assert get(server, "/doWork").status_code == 200
    assert server.stats()["faults"] == []


def test_a_fault_with_a_rate_hits_about_that_share(server):
    server.admin("POST", "/faults", {"kind": "error", "rate": 0.5})
    codes = [get(server, "/doWork?task_delay_ms=0&sync_work_ms=0").status_code for _ in range(60)]
    assert 12 <= codes.count(500) <= 48
    assert codes.count(500) + codes.count(200) == 60


def test_faults_can_be_listed_and_removed(server):
    first = server.admin("POST", "/faults", {"kind": "error", "rate": 0.1, "duration_s": 30})[1]["fault"]
    server.admin("POST", "/faults", {"kind": "slow", "delay_ms": 50})
    status, body = server.admin("GET", "/faults")
    assert status == 200 and [f["kind"] for f in body["faults"]] == ["error", "slow"]
    assert 0 < body["faults"][0]["remaining_s"] <= 30 and body["faults"][1]["remaining_s"] is None
    assert server.admin("DELETE", "/faults/" + first["id"])[0] == 200
    assert server.admin("DELETE", "/faults/" + first["id"])[0] == 404
    assert server.admin("DELETE", "/faults") == (200, {"removed": 1})


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"kind": "lightning"}, "unknown fault kind 'lightning'"),
        ({"kind": "outage"}, "outage needs duration_s"),
        ({"kind": "slow", "delay_ms": "long"}, "slow delay_ms must be a number"),
        ({"kind": "error", "colour": "red"}, "error takes no 'colour'"),
        ("error", "a fault must be a JSON object"),
    ],
)
def test_bad_fault_bodies_are_400(server, body, needle):
    status, reply = server.admin("POST", "/faults", body)
    assert status == 400 and needle in reply["error"]
    assert server.stats()["faults"] == []


def test_start_up_faults_from_flag_and_env(start_target):
    flagged = start_target(fault=["error:status=501"])
    assert get(flagged, "/doWork").status_code == 501
    from_env = start_target(env={"TARGET_FAULT": "slow:delay_ms=200"})
    assert from_env.stats()["faults"][0]["kind"] == "slow"
    assert timed_get(from_env, "/doWork")[1] >= 0.2


# -- run-time config through /admin/config ----------------------------------------------------------


def test_admin_config_changes_the_work_at_run_time(server):
    status, body = server.admin("POST", "/config", {"sync_work_ms": 80})
    assert status == 200 and body["config"]["sync_work_ms"] == 80.0
    assert body["overrides"] == {"sync_work_ms": {"value": 80.0, "remaining_s": None}}
    assert timed_get(server, "/doWork")[1] >= 0.1
    assert server.stats()["config"]["sync_work_ms"] == 80.0
    server.admin("DELETE", "/config")
    assert server.stats()["config"]["sync_work_ms"] == 10.0


def test_admin_config_for_a_duration_reverts_by_itself(server):
    body = server.admin("POST", "/config", {"sync_work_ms": 20, "duration_s": 0.5})[1]
    assert 0 < body["overrides"]["sync_work_ms"]["remaining_s"] <= 0.5
    assert server.stats()["config"]["sync_work_ms"] == 20.0
    time.sleep(0.6)
    stats = server.stats()
    assert stats["config"]["sync_work_ms"] == 10.0 and stats["overrides"] == {}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"sync_work_ms": -1}, "sync_work_ms: must be a number from 0 to 10000, got -1"),
        ({"port": 80}, "port: cannot be changed at run time"),
        ({"sync_work_ms": 20, "duration_s": -3}, "duration_s: must be a number > 0"),
        ({}, "body names no option to change"),
        ({"duration_s": 5}, "body names no option to change"),
        ([1, 2], "body must be a JSON object"),
    ],
)
def test_bad_admin_config_is_400(server, body, needle):
    status, reply = server.admin("POST", "/config", body)
    assert status == 400 and needle in reply["error"]
    assert server.stats()["overrides"] == {}


# -- status log -------------------------------------------------------------------------------------


BLOCK = re.compile(r"^lag: (\d+)\n concurrent: (\d+)\n  completed: (\d+)\n    sockets: (\d+)\n", re.M)


def test_status_log_prints_the_seeds_lines_per_interval(start_target):
    server = start_target(quiet=False, log_interval_ms=100)
    for _ in range(5):
        get(server, "/doWork")
    time.sleep(0.35)
    blocks = BLOCK.findall(server.output())
    assert len(blocks) >= 3
    assert sum(int(completed) for _, _, completed, _ in blocks) == 5  # per interval, not cumulative
    assert "rejected" not in server.output()


def test_status_log_adds_rejected_when_shedding(start_target):
    server = start_target(quiet=False, log_interval_ms=100, reject_if_too_busy=True)
    time.sleep(0.25)
    assert re.search(r"^    sockets: \d+\n   rejected: 0$", server.output(), re.M)


def test_quiet_prints_only_the_start_line(start_target):
    server = start_target(log_interval_ms=50)
    time.sleep(0.2)
    assert "lag:" not in server.output() and "listening on" in server.output()


# -- sockets and Nagle ------------------------------------------------------------------------------


def wait_for(predicate, timeout: float = 3.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_sockets_count_the_open_connections(server):
    before = server.stats()
    assert before["sockets"] == 1  # the connection asking for /stats
    clients = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(7)]
    try:
        assert wait_for(lambda: server.stats()["sockets"] == 8)
    finally:
        for client in clients:
            client.close()
    assert wait_for(lambda: server.stats()["sockets"] == 1)
    after = server.stats()
    accepted = after["sockets_accepted_total"] - before["sockets_accepted_total"]
    closed = after["sockets_closed_total"] - before["sockets_closed_total"]
    assert accepted >= 8 and accepted - closed == 0  # 7 clients and the /stats calls, all closed by now


@pytest.mark.parametrize("path", ["/ping", "/doWork?task_delay_ms=0&sync_work_ms=0"])
def test_keep_alive_requests_do_not_pay_nagle(server, path):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        times = []
        for _ in range(40):
            start = time.perf_counter()
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            times.append(time.perf_counter() - start)
            assert response.status == 200 and not response.will_close
    finally:
        connection.close()
    assert statistics.median(times) < 0.010  # Nagle + delayed ACK would make it ~40 ms
