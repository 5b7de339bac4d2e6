"""The target's own status series: the ring, the query, the sampler's cursor, and real servers whose
loop is blocked while the series keeps its schedule and the sampler backfills what it asked for late."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import gevent
import pytest

from locust_plugin.server_sample import SampleInterval
from locust_plugin.server_sampler import ServerSampler
from locust_plugin.server_series import BadSeries, SeriesCursor, series_url, status_port_of
from target_server.status_log import MAX_BATCH, BadQuery, StatusRing, parse_series_query
from tests.conftest import ROOT

# -- the ring ------------------------------------------------------------------------------------------


def filled(capacity: int, count: int) -> StatusRing:
    ring = StatusRing(capacity)
    for n in range(count):
        ring.append({"time": 100.0 + n / 4, "n": n})
    return ring


def seqs(answer: dict[str, Any]) -> list[int]:
    return [record["seq"] for record in answer["samples"]]


def test_records_are_numbered_from_one_and_served_after_a_sequence_number():
    ring = filled(10, 6)
    assert ring.latest_seq == 6
    assert seqs(ring.since(2)) == [3, 4, 5, 6]
    assert ring.since(2)["samples"][0] == {"seq": 3, "time": 100.5, "n": 2}
    assert seqs(ring.since(6)) == []
    assert ring.since(0)["missed"] == 0 and seqs(ring.since(0)) == [1, 2, 3, 4, 5, 6]


def test_without_since_only_the_newest_record_comes():
    answer = filled(10, 6).since(None)
    assert seqs(answer) == [6]
    assert (answer["oldest_seq"], answer["latest_seq"], answer["missed"], answer["more"]) == (1, 6, 0, False)
    assert filled(10, 0).since(None)["samples"] == []


def test_a_full_ring_drops_the_oldest_and_says_how_many_were_missed():
    ring = filled(4, 10)  # 1..6 are gone
    answer = ring.since(3)
    assert seqs(answer) == [7, 8, 9, 10]
    assert answer["oldest_seq"] == 7
    assert answer["missed"] == 3  # 4, 5 and 6 were asked for and are gone
    assert ring.since(6)["missed"] == 0


def test_a_long_backlog_comes_in_pages():
    ring = filled(50, 25)
    first = ring.since(0, limit=10)
    assert seqs(first) == list(range(1, 11)) and first["more"]
    last = ring.since(20, limit=10)
    assert seqs(last) == [21, 22, 23, 24, 25] and not last["more"]


def test_a_ring_needs_room():
    with pytest.raises(ValueError, match="capacity must be 1 or more"):
        StatusRing(0)


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("since=x", "since: must be an integer >= 0, got 'x'"),
        ("since=-1", "since: must be an integer >= 0, got '-1'"),
        ("limit=0", f"limit: must be an integer from 1 to {MAX_BATCH}, got '0'"),
        ("after=3", "unknown parameter 'after'; allowed: since, limit"),
    ],
)
def test_bad_queries_are_one_line_naming_the_value(query, fragment):
    with pytest.raises(BadQuery) as caught:
        parse_series_query(query)
    assert str(caught.value) == fragment


def test_good_queries():
    assert parse_series_query("") == (None, MAX_BATCH)
    assert parse_series_query("since=12&limit=5") == (12, 5)


# -- the sampler's cursor ---------------------------------------------------------------------------------


def answer(instance: str, seq_from: int, seq_to: int, now: float, missed: int = 0) -> dict[str, Any]:
    return {
        "schema": 1,
        "instance": instance,
        "now": now,
        "missed": missed,
        "samples": [{"seq": n, "time": 1000.0 + n / 4} for n in range(seq_from, seq_to + 1)],
    }


def test_the_cursor_asks_for_what_follows_the_last_record_it_took():
    cursor = SeriesCursor("http://127.0.0.1:5/stats/series")
    assert cursor.next_url() == "http://127.0.0.1:5/stats/series"
    assert [r["seq"] for r in cursor.take(answer("a", 7, 7, 1001.75), 2001.7, 2001.8)] == [7]
    assert cursor.next_url().endswith("/stats/series?since=7")
    # a late answer brings everything since: the backfill
    assert [r["seq"] for r in cursor.take(answer("a", 8, 15, 1004.0), 2002.0, 2004.05)] == list(range(8, 16))
    # a repeated record (an answer that crossed a retry) is not taken twice
    assert [r["seq"] for r in cursor.take(answer("a", 14, 16, 1004.3), 2004.3, 2004.31)] == [16]


def test_the_clock_offset_comes_from_the_fastest_exchange():
    cursor = SeriesCursor("u")
    cursor.take(answer("a", 1, 1, now=1000.0), sent_at=2000.0, received_at=2000.5)  # slow: 0.5 s round trip
    assert cursor.offset_s == pytest.approx(1000.25)
    cursor.take(answer("a", 2, 2, now=1001.0), sent_at=2001.0, received_at=2001.02)  # fast: trusted
    assert cursor.offset_s == pytest.approx(1000.01)
    cursor.take(answer("a", 3, 3, now=1002.0), sent_at=2002.0, received_at=2003.0)  # slow again: ignored
    assert cursor.offset_s == pytest.approx(1000.01)
    assert cursor.local_time({"time": 1000.5}) == pytest.approx(2000.51)


def test_a_restarted_target_is_read_from_its_first_record_and_losses_are_counted():
    cursor = SeriesCursor("u")
    cursor.take(answer("a", 40, 40, 1.0), 0.0, 0.0)
    cursor.take(answer("a", 44, 45, 1.0, missed=3), 0.0, 0.0)
    assert cursor.missed == 3
    assert cursor.take(answer("b", 41, 41, 1.0), 0.0, 0.0) == []  # another server on that port
    assert cursor.next_url().endswith("?since=0")
    assert [r["seq"] for r in cursor.take(answer("b", 1, 3, 1.0), 0.0, 0.0)] == [1, 2, 3]


@pytest.mark.parametrize("body", ["<html>", {"schema": 2, "samples": []}, {"schema": 1, "samples": None}])
def test_anything_else_is_not_a_series(body):
    with pytest.raises(BadSeries):
        SeriesCursor("u").take(body, 0.0, 0.0)


def test_the_series_is_on_the_targets_host_at_its_status_port():
    assert series_url("http://127.0.0.1:3000/", 4100) == "http://127.0.0.1:4100/stats/series"
    assert series_url("http://[::1]:3000", 4100) == "http://[::1]:4100/stats/series"
    assert status_port_of({"status_port": 4100}) == 4100
    assert status_port_of({"status_port": None}) is None
    assert status_port_of({}) is None and status_port_of({"status_port": True}) is None


# -- real servers ------------------------------------------------------------------------------------------


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_the_series_keeps_its_schedule_and_answers_while_the_loop_is_blocked(start_target):
    """One request busy-spins the server's only loop for 2 s: /stats cannot answer, the series can."""
    server = start_target(max_work_ms=3000)  # a 2 s spin is past the default work cap
    series = series_url(server.url, server.stats()["status_port"])
    start = get_json(series)["latest_seq"]
    blocker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import urllib.request; urllib.request.urlopen('{server.url}"
            "/doWork?task_delay_ms=0&sync_work_ms=2000', timeout=10).read()",
        ],
    )
    try:
        time.sleep(0.8)  # the spin has started
        asked = time.monotonic()
        during = get_json(f"{series}?since={start}", timeout=1.0)
        took = time.monotonic() - asked
        with pytest.raises(OSError):  # the load's own port is stuck behind the spin
            urllib.request.urlopen(server.url + "/stats", timeout=0.3)
    finally:
        blocker.wait(timeout=10)
    assert took < 0.5, took  # the loop has more than a second of spinning left
    time.sleep(0.6)  # the loop's lag sampler wakes (late) and a record after it comes
    after = get_json(f"{series}?since={start}")
    times = [record["time"] for record in after["samples"]]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) >= 8 and max(gaps) < 0.4, gaps  # every 250 ms through the 2 s block
    assert [r["seq"] for r in after["samples"]] == list(range(start + 1, start + 1 + len(times)))
    assert during["samples"][-1]["in_flight"] == 1  # recorded mid-spin, not after it
    assert max(r["lag_ms"] for r in after["samples"]) > 300  # the loop's own (smoothed) measure saw it
    assert after["samples"][-1]["completed_total"] == 1


@pytest.mark.slow
def test_a_sampler_that_asks_late_backfills_every_record(start_target):
    server = start_target()
    sampler = ServerSampler(SampleInterval(250))
    sampler.base_url = server.url
    sampler.started_at = time.time()
    first = sampler.sample_once()  # finds the series through /stats, takes its newest record
    assert first is not None and sampler.series is not None
    gevent.sleep(2.1)  # silence: about eight records pile up in the target's ring
    newest = sampler.sample_once()
    samples = list(sampler.history)
    assert newest is samples[-1]
    assert 8 <= len(samples) - 1 <= 10, len(samples)
    assert [s.server_seq for s in samples] == list(range(first.server_seq, first.server_seq + len(samples)))
    assert all(0.1 < b.server_time - a.server_time < 0.4 for a, b in itertools.pairwise(samples))
    assert all(s.completed_per_s == 0.0 for s in samples[1:])  # rates over the server's own intervals


@pytest.mark.slow
def test_totals_after_a_reset_restart_in_the_series(start_target):
    server = start_target()
    for _ in range(3):
        urllib.request.urlopen(server.url + "/doWork", timeout=5).read()
    server.admin("POST", "/reset")
    time.sleep(0.3)
    newest = get_json(series_url(server.url, server.stats()["status_port"]))["samples"][-1]
    assert (newest["reset_count"], newest["completed_total"], newest["requests_total"]) == (1, 0, 0)


@pytest.mark.slow
def test_status_port_minus_one_turns_the_series_off_and_the_sampler_asks_stats(start_target):
    server = start_target(status_port=-1)
    assert server.stats()["status_port"] is None
    sampler = ServerSampler(SampleInterval(250))
    sampler.base_url = server.url
    sample = sampler.sample_once()
    assert sample is not None and sampler.series is None and sample.server_seq is None
    assert "listening on" in server.output() and "status series" not in server.output()


@pytest.mark.parametrize("value", ["-2", "65536", "x"])
@pytest.mark.slow
def test_a_bad_status_port_is_one_line_and_exit_2(value):
    done = subprocess.run(
        [sys.executable, "-m", "target_server", "--port", "0", "--status-port", value],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert done.stderr == (
        f"target_server: error: --status-port: must be an integer from -1 to 65535, got '{value}'\n"
    )


@pytest.mark.slow
def test_a_taken_status_port_is_one_line_and_exit_1(start_target):
    taken = start_target()
    port = taken.stats()["status_port"]
    done = subprocess.run(
        [sys.executable, "-m", "target_server", "--port", "0", "--quiet", "--status-port", str(port)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith(f"target_server: cannot listen on 127.0.0.1:{port} (--status-port): "), lines
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_the_status_port_answers_unknown_paths_and_bad_queries_with_json(start_target):
    server = start_target()
    base = f"http://127.0.0.1:{server.stats()['status_port']}"
    assert get_json(base + "/ping") == {"result": "pong"}
    for path, status in (("/stats", 404), ("/stats/series?since=x", 400)):
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(base + path, timeout=5)
        assert caught.value.code == status
        assert "error" in json.loads(caught.value.read())
