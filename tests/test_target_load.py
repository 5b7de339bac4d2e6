"""The target under load: its capacity, lag under overload, shedding, and falling over past max_sockets.

Load comes from this process with gevent sockets, every loop bounded in count and time. Rates are set
relative to the work model (not to this machine's speed), and the margins are wide: the machine is noisy.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

import gevent
import gevent.socket
import pytest
from geventhttpclient import HTTPClient

pytestmark = pytest.mark.slow


@dataclass
class Result:
    launched: float
    finished: float
    status: int | None = None
    lag_ms: float | None = None
    retry_after: str | None = None
    body: bytes = b""
    error: str | None = None


def fetch(port: int, path: str, launched: float, connect_timeout: float, read_timeout: float) -> Result:
    """One request on a new connection, as the seed's client did (no keep-alive)."""
    result = Result(launched=launched, finished=launched)
    try:
        with gevent.socket.create_connection(("127.0.0.1", port), timeout=connect_timeout) as sock:
            sock.settimeout(read_timeout)
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head, _, result.body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        result.status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        result.lag_ms = float(headers["x-server-lag-ms"])
        result.retry_after = headers.get("retry-after")
    except (OSError, ValueError, IndexError, KeyError) as error:
        result.error = type(error).__name__
    result.finished = time.monotonic()
    return result


def open_loop(port: int, rate: float, duration_s: float, path: str = "/doWork") -> list[Result]:
    """Launch `rate` requests per second for `duration_s` on schedule, whatever happens to earlier ones."""
    start = time.monotonic()
    greenlets = []
    for i in range(int(rate * duration_s)):
        launch_at = start + i / rate
        gevent.sleep(max(0.0, launch_at - time.monotonic()))
        greenlets.append(gevent.spawn(fetch, port, path, launch_at, 3.0, 10.0))
    gevent.joinall(greenlets, timeout=20)
    gevent.killall([g for g in greenlets if not g.ready()])
    return [g.value for g in greenlets if g.successful() and g.value is not None]


def wait_for_lag_below(server, limit_ms: float, timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    while True:
        lag = server.stats(timeout=10)["lag_ms"]
        if lag < limit_ms or time.monotonic() > deadline:
            return lag
        time.sleep(0.2)


def test_seed_defaults_give_about_100_requests_per_second(start_target):
    server = start_target()
    measure_from, measure_to = 0.5, 3.0
    finished: list[float] = []
    start = time.monotonic()

    def worker() -> None:
        client = HTTPClient("127.0.0.1", server.port, concurrency=1, connection_timeout=5, network_timeout=10)
        try:
            for _ in range(300):
                if time.monotonic() - start > measure_to:
                    return
                response = client.get("/doWork")
                response.read()
                assert response.status_code == 200
                finished.append(time.monotonic() - start)
        finally:
            client.close()

    gevent.joinall([gevent.spawn(worker) for _ in range(20)], timeout=15, raise_error=True)
    in_window = sum(measure_from <= t < measure_to for t in finished)
    rate = in_window / (measure_to - measure_from)
    assert 50 <= rate <= 130, f"capacity {rate:.0f} req/s"
    assert server.stats()["completed_total"] == len(finished)


def test_lag_rises_past_max_lag_under_2x_overload_and_falls_back(start_target):
    # 20 ms of blocking work: capacity under 50/s, so 100/s is about twice what it can serve.
    server = start_target(sync_work_ms=20, lag_interval_ms=250)
    results = open_loop(server.port, rate=100, duration_s=2.5)
    peak = max(r.lag_ms for r in results if r.lag_ms is not None)
    assert peak > 70, f"peak lag {peak} ms"
    assert wait_for_lag_below(server, 70, timeout_s=8) < 70
    assert server.stats()["rejected_total"] == 0


def test_reject_if_too_busy_sheds_with_503_and_keeps_serving(start_target):
    server = start_target(sync_work_ms=20, lag_interval_ms=250, reject_if_too_busy=True, retry_after_s=2)
    results = open_loop(server.port, rate=100, duration_s=2.5)
    shed = [r for r in results if r.status == 503]
    served = [r for r in results if r.status == 200]
    assert shed and all(r.body == b'{"error": "too busy!"}' and r.retry_after == "2" for r in shed)
    assert len(served) >= 40
    late = [r for r in served if r.launched - results[0].launched > 1.5]
    assert late, "still serving in the second half of the overload"
    assert max(r.lag_ms for r in results if r.lag_ms is not None) < 600  # without shedding: ~1000 ms
    stats = server.stats()
    assert stats["rejected_total"] == len(shed)
    assert wait_for_lag_below(server, 70, timeout_s=8) < 70


def test_connects_time_out_once_max_sockets_and_backlog_are_full(start_target):
    server = start_target(max_sockets=4, backlog=1)
    server.admin("POST", "/faults", {"kind": "hang", "duration_s": 2.5})
    hung = [socket.create_connection(("127.0.0.1", server.port), timeout=2) for _ in range(4)]
    try:
        for sock in hung:
            sock.sendall(b"GET /doWork HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.3)  # the pool is now full of hung requests: the server stops accepting
        queued, timeouts = [], 0
        for _ in range(6):  # the kernel queues backlog+1 connections, then drops SYNs
            try:
                queued.append(socket.create_connection(("127.0.0.1", server.port), timeout=0.4))
            except TimeoutError:
                timeouts += 1
                if timeouts == 2:
                    break
        assert timeouts >= 1, f"every connect succeeded ({len(queued)})"
        assert 1 <= len(queued) <= 3
        for sock in queued:
            sock.close()
    finally:
        for sock in hung:
            sock.close()
    # The hang ends, the pool drains, and the server serves again.
    deadline = time.monotonic() + 6
    while True:
        try:
            stats = server.stats(timeout=1)
            break
        except OSError:
            assert time.monotonic() < deadline, "the server never recovered"
    assert stats["faulted_total"]["hang"] == 4
