"""Each client's signature against the real target server at about 2x overload, in short real Locust runs."""

from __future__ import annotations

import re
import time
from datetime import datetime

import pytest

from tests.locust_run import run_locust

pytestmark = pytest.mark.slow

OVERLOAD = "200"  # requests/s: about 2x what the default target serves


def test_hammer_falls_over_the_way_the_seed_did(start_target, tmp_path):
    server = start_target()
    run = run_locust("HammerClient", server.url, 8, "--launch-rate", OVERLOAD, tmp_path=tmp_path)
    # The seed's `connect ETIMEDOUT`: a loop busy with work stops accepting, the backlog fills, SYNs drop.
    assert run.failure_count("ConnectTimeout('connect-timeout')", request_type="GET") > 0, run.output[-2000:]
    assert server.stats()["peak_lag_ms"] > 4 * 70  # far past toobusy's 70 ms
    assert run.count("SHED", "/doWork [throttle]") == 0


def test_throttle_caps_what_the_server_sees_and_counts_cancellations(start_target, tmp_path):
    server = start_target()
    run = run_locust(
        "ThrottledClient",
        server.url,
        6,
        "--launch-rate",
        OVERLOAD,
        "--max-concurrent",
        "8",
        tmp_path=tmp_path,
    )
    peaks = server.stats()
    assert 4 <= peaks["peak_in_flight"] <= 8, peaks
    assert peaks["peak_concurrent"] <= 8
    cancelled = run.count("SHED", "/doWork [throttle]")
    assert cancelled > 50
    assert run.failure_count("ThrottleRejected('throttle')", request_type="SHED") == cancelled
    served = run.row("GET", "/doWork")
    assert served and int(served["Request Count"]) > 100 and int(served["Failure Count"]) == 0


def test_pooled_client_never_opens_more_sockets_than_its_cap(start_target, tmp_path):
    server = start_target()
    run = run_locust(
        "PooledClient",
        server.url,
        6,
        "--launch-rate",
        OVERLOAD,
        "--max-sockets",
        "6",
        "--keep-alive",
        "true",
        "--server-sample-ms",
        "0",
        tmp_path=tmp_path,  # the sampler is a socket too
    )
    peaks = server.stats()
    # +1: this /stats request's own connection can arrive before the server has reaped the
    # client's six, just closed by its exit.
    assert 3 <= peaks["peak_sockets"] <= 6 + 1, peaks
    assert peaks["peak_in_flight"] <= 6
    assert run.count("GET", "/doWork") > 100


def test_timeout_bounds_every_request_from_launch_queueing_included(start_target, tmp_path):
    server = start_target(max_sockets=32, backlog=8)
    # The breaker runs with its real defaults (recent-error: any one server failure opens it). The server
    # behind four sockets is healthy, so it must never open: the deadline is used up queueing in the
    # client, and such calls are shed before they are sent (--min-wire-share), never blamed on the server.
    run = run_locust(
        "CombinedClient",
        server.url,
        6,
        "--launch-rate",
        OVERLOAD,
        "--max-concurrent",
        "500",
        "--max-sockets",
        "4",
        "--request-timeout-ms",
        "800",
        "--loglevel",
        "INFO",
        tmp_path=tmp_path,
    )
    assert "CombinedClient: breaker" not in run.output, run.output[-3000:]
    assert run.count("SHED", "/doWork [circuit-open]") == 0
    rows = [row for row in run.stats() if row["Name"] != "Aggregated"]
    assert rows
    for row in rows:
        # Slack for a timer firing late on a loaded 2-core machine; unbounded, this would be seconds.
        assert float(row["Max Response Time"]) <= 800 + 400, row
    # Four sockets cannot carry 200/s: requests queue for a socket, and the deadline ends them.
    deadline_ended = run.failure_count("('deadline')")
    assert deadline_ended > 100, run.failures()
    assert deadline_ended == sum(int(row["Occurrences"]) for row in run.failures())


def _log_time(line: str) -> float:
    stamp = re.match(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]", line)
    assert stamp, line
    return datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def test_breaker_opens_on_an_outage_sheds_probes_and_closes(start_target, tmp_path):
    server = start_target()
    import threading

    injected: dict[str, float] = {}

    def outage() -> None:
        time.sleep(3)
        injected["at"] = time.time()
        status, _ = server.admin("POST", "/faults", {"kind": "outage", "duration_s": 2})
        injected["status"] = status

    threading.Thread(target=outage, daemon=True).start()
    run = run_locust(
        "BreakerClient",
        server.url,
        9,
        "--launch-rate",
        "40",
        "--breaker-mode",
        "rate",
        "--breaker-window",
        "2s",
        "--min-calls",
        "10",
        "--open-ms",
        "1000",
        "--half-open-calls",
        "3",
        "--loglevel",
        "INFO",
        tmp_path=tmp_path,
    )
    assert injected.get("status") in (200, 201), injected
    transitions = [line for line in run.output.splitlines() if "BreakerClient: breaker" in line]
    opened = [line for line in transitions if "closed -> open" in line]
    assert opened, run.output[-3000:]
    assert _log_time(opened[0]) - injected["at"] < 1.5
    assert any("open -> half-open" in line for line in transitions)
    assert "half-open -> closed" in transitions[-1]
    assert run.failure_count("CircuitOpen('circuit-open')", request_type="SHED") > 0
