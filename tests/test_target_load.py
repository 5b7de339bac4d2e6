"""The target under load: its capacity, lag under overload, shedding, and falling over past max_sockets.

Load comes from this process with gevent sockets, every loop bounded in count and time. Rates are set
relative to the work model (not to this machine's speed), and the margins are wide: the machine is noisy.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
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
    headers_sent: str = ""


def fetch(
    port: int, path: str, launched: float, connect_timeout: float, read_timeout: float, headers: str = ""
) -> Result:
    """One request on a new connection, as the seed's client did (no keep-alive). `headers`: extra header
    lines, each ending in CRLF."""
    result = Result(launched=launched, finished=launched, headers_sent=headers)
    try:
        with gevent.socket.create_connection(("127.0.0.1", port), timeout=connect_timeout) as sock:
            sock.settimeout(read_timeout)
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n{headers}Connection: close\r\n\r\n".encode())
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


def open_loop(
    port: int,
    rate: float,
    duration_s: float,
    path: str = "/doWork",
    headers: Callable[[int], str] | None = None,
    until: Callable[[list[Result], float, float], bool] | None = None,
    max_s: float = 0.0,
) -> list[Result]:
    """Launch `rate` requests per second for `duration_s` on schedule, whatever happens to earlier ones;
    `headers(i)` gives the i-th request's extra header lines. With `until`, keep launching past
    `duration_s` (up to `max_s`) until `until(the finished results, first launch, last launch)` holds."""
    start = time.monotonic()
    greenlets: list[gevent.Greenlet] = []
    for i in range(int(rate * (duration_s if until is None else max(duration_s, max_s)))):
        if until is not None and i >= rate * duration_s and i % 10 == 0:
            finished = [g.value for g in greenlets if g.ready() and g.successful() and g.value is not None]
            if until(finished, start, start + (i - 1) / rate):
                break
        launch_at = start + i / rate
        gevent.sleep(max(0.0, launch_at - time.monotonic()))
        extra = headers(i) if headers is not None else ""
        greenlets.append(gevent.spawn(fetch, port, path, launch_at, 3.0, 10.0, extra))
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


def saturated_rate(
    port: int, path: str, seconds: float, clients: int = 20, warm_s: float = 0.15
) -> tuple[float, int]:
    """(requests/s served from `warm_s` on, requests served in all): `clients` keep-alive clients sending
    `path` one request after another for `seconds`, enough to keep the seed's loop always busy."""
    finished: list[float] = []
    start = time.monotonic()

    def worker() -> None:
        client = HTTPClient("127.0.0.1", port, concurrency=1, connection_timeout=5, network_timeout=10)
        try:
            for _ in range(300):
                if time.monotonic() - start > seconds:
                    return
                response = client.get(path)
                response.read()
                assert response.status_code == 200
                finished.append(time.monotonic() - start)
        finally:
            client.close()

    gevent.joinall([gevent.spawn(worker) for _ in range(clients)], timeout=seconds + 12, raise_error=True)
    return sum(warm_s <= t < seconds for t in finished) / (seconds - warm_s), len(finished)


def test_seed_defaults_give_about_100_requests_per_second(start_target):
    """The seed's 10 ms of blocking work caps a process at 1000 / 10 = 100 requests/s, on any machine: the
    spin runs to a wall-clock end, so a busy machine only lowers the rate (to 55-79/s with two busy loops
    and other load on the 2 cores, 87/s quiet). Hence a ceiling of 105 and a floor of 50."""
    server = start_target()
    rate, served = saturated_rate(server.port, "/doWork", 3.0, warm_s=0.5)
    assert 50 <= rate <= 105, f"capacity {rate:.0f} req/s"
    assert server.stats()["completed_total"] == served


def test_lag_rises_past_max_lag_under_2x_overload_and_falls_back(start_target):
    # 20 ms of blocking work: capacity under 50/s, so 100/s is about twice what it can serve.
    server = start_target(sync_work_ms=20, lag_interval_ms=250)
    results = open_loop(server.port, rate=100, duration_s=2.5)
    peak = max(r.lag_ms for r in results if r.lag_ms is not None)
    assert peak > 70, f"peak lag {peak} ms"
    assert wait_for_lag_below(server, 70, timeout_s=8) < 70
    assert server.stats()["rejected_total"] == 0


def served_late(results: list[Result], first: float, last: float) -> list[Result]:
    """The requests served among those launched in the last 40 % of the launches from `first` to `last`."""
    return [r for r in results if r.status == 200 and r.launched - first >= 0.6 * (last - first)]


def test_reject_if_too_busy_sheds_with_503_and_keeps_serving(start_target):
    server = start_target(sync_work_ms=20, lag_interval_ms=250, reject_if_too_busy=True, retry_after_s=2)
    # toobusy swings: it admits on a lag up to one 250 ms sample old, the admitted burst blocks the loop,
    # then it sheds everything until the smoothed lag decays. Quiet, a swing takes about a second; on a busy
    # machine up to 4 s. So the overload goes on (8 s at most) until its last 40 % has had a request served.
    results = open_loop(server.port, rate=100, duration_s=2.5, until=served_late, max_s=8)
    shed = [r for r in results if r.status == 503]
    served = [r for r in results if r.status == 200]
    assert shed and all(r.body == b'{"error": "too busy!"}' and r.retry_after == "2" for r in shed)
    assert len(served) >= 40
    first, last = min(r.launched for r in results), max(r.launched for r in results)
    assert served_late(results, first, last), "still serving in the last 40 % of the overload"
    assert max(r.lag_ms for r in results if r.lag_ms is not None) < 600  # without shedding: ~1000 ms
    stats = server.stats()
    assert stats["rejected_total"] == len(shed)
    assert wait_for_lag_below(server, 70, timeout_s=8) < 70


def _criticality_mix(i: int) -> str:
    """3 in 10 requests critical (the issue's --criticality-mix critical=0.3), the rest sheddable."""
    return f"Hammerlab-Criticality: {'critical' if i % 10 in (0, 4, 7) else 'sheddable'}\r\n"


def _rejected_share(results: list[Result], level: str) -> tuple[float, int]:
    """(share answered 503, how many answered at all) of one criticality's requests."""
    mine = [r for r in results if r.status is not None and level in r.headers_sent]
    return sum(r.status == 503 for r in mine) / max(1, len(mine)), len(mine)


def test_priority_shedding_refuses_sheddable_requests_and_admits_critical_ones(start_target):
    """About 2 x capacity (20 ms of blocking work, 100 requests/s), 30 % critical. With
    --priority-shedding, sheddable requests are refused from 30 ms of lag, which holds the lag below the
    200 ms where critical ones would be; with plain toobusy shedding at the same 200 ms, the two classes
    are refused alike. A 50 ms lag check (toobusy: 500), so the lag follows the load within the run's 3 s."""
    flags = {"sync_work_ms": 20, "lag_interval_ms": 50, "max_lag_ms": 200, "sheddable_lag_ms": 30}
    server = start_target(priority_shedding=True, **flags)
    results = open_loop(server.port, rate=100, duration_s=3, headers=_criticality_mix)
    sheddable, answered_s = _rejected_share(results, "sheddable")
    critical, answered_c = _rejected_share(results, "critical")
    plain = start_target(reject_if_too_busy=True, **flags)
    contrast = open_loop(plain.port, rate=100, duration_s=3, headers=_criticality_mix)
    plain_sheddable, plain_critical = (
        _rejected_share(contrast, level)[0] for level in ("sheddable", "critical")
    )
    print(
        f"rejected, priority shedding: sheddable {sheddable:.0%} of {answered_s}, critical {critical:.0%} of "
        f"{answered_c}; plain shedding: sheddable {plain_sheddable:.0%}, critical {plain_critical:.0%}"
    )
    assert answered_s >= 150 and answered_c >= 60
    assert sheddable >= 0.5 and critical <= 0.1, (sheddable, critical)
    assert plain_critical >= 0.2 and plain_critical >= 2 * critical, (plain_critical, critical)
    counts = server.stats()["by_criticality_total"]
    assert counts["critical"]["requests"] == answered_c and counts["sheddable"]["requests"] == answered_s
    assert counts["sheddable"]["rejected"] == round(sheddable * answered_s)
    assert counts["critical"]["rejected"] == round(critical * answered_c)


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
