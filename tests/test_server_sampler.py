"""The /stats sampler: rates from the server's totals, the CSV contract, and a real server on both sides."""

from __future__ import annotations

import csv
import logging
import socket
from pathlib import Path
from typing import Any

import gevent
import pytest
from gevent.pywsgi import WSGIServer

from locust_plugin.csv_log import CsvLog
from locust_plugin.server_sample import NotATarget, SampleInterval, check_stats, interval_rate, make_sample
from locust_plugin.server_sampler import ServerSampler
from mitigations.csv_schema import SERVER_COLUMNS


def stats(
    at: float,
    *,
    completed: int = 0,
    rejected: int = 0,
    errors: int = 0,
    reset_count: int = 0,
    since_reset: float = 1000.0,
    sockets: int = 1,
    faults: list[dict[str, Any]] | None = None,
    peaks: bool = True,
) -> dict[str, Any]:
    """A /stats body in the target's shape (target_server.state.TargetState.snapshot)."""
    return {
        "schema": 1,
        "time": at,
        "since_reset_s": since_reset,
        "reset_count": reset_count,
        "lag_ms": 12.345,
        "in_flight": 3,
        "concurrent": 2,
        "sockets": sockets,
        "requests_total": completed + rejected + errors,
        "completed_total": completed,
        "rejected_total": rejected,
        "errors_total": errors,
        "faults": faults or [],
        **({"peak_lag_ms": 412.06, "peak_in_flight": 37, "peak_sockets": 41} if peaks else {}),
    }


def test_rates_are_the_totals_difference_over_the_servers_own_interval():
    first = make_sample(stats(100.0, completed=10, rejected=4), None, received_at=5000.0, started_at=4999.0)
    second = make_sample(
        stats(100.5, completed=60, rejected=9, errors=1), first, received_at=5000.7, started_at=4999.0
    )
    assert first.completed_per_s is None and first.rejected_per_s is None  # no interval yet
    assert second.completed_per_s == pytest.approx(100.0)  # 50 in 0.5 s of server time, not 0.7 s local
    assert second.rejected_per_s == pytest.approx(10.0)
    assert second.errors_per_s == pytest.approx(2.0)
    assert second.elapsed_s == pytest.approx(1.7)


def test_a_reset_between_samples_counts_from_the_reset():
    before = make_sample(stats(200.0, completed=500), None, received_at=1.0, started_at=0.0)
    # /admin/reset 0.25 s before the second sample: 30 completed since then
    after = make_sample(
        stats(201.0, completed=30, reset_count=1, since_reset=0.25), before, received_at=2.0, started_at=0.0
    )
    assert after.completed_per_s == pytest.approx(120.0)
    assert after.rejected_per_s == 0.0


def test_a_restarted_server_is_a_reset_too():
    before = make_sample(stats(300.0, completed=900), None, received_at=1.0, started_at=0.0)
    after = make_sample(stats(301.0, completed=40, since_reset=0.5), before, received_at=2.0, started_at=0.0)
    assert after.completed_per_s == pytest.approx(80.0)


def test_interval_rate_edges():
    assert interval_rate(10, 20, 0.0, False, 5.0) is None
    assert interval_rate(10, 20, 2.0, False, 5.0) == 5.0
    assert interval_rate(10, 4, 2.0, True, 0.0) == 2.0  # reset with unknown time: the whole window


def test_the_sampler_does_not_count_its_own_socket_and_lists_faults_once_sorted():
    faults = [
        {"id": "f1", "kind": "outage", "status": 503, "duration_s": 10, "remaining_s": 7.25},
        {"id": "f2", "kind": "error", "rate": 0.5, "remaining_s": None},
        {"id": "f3", "kind": "error", "rate": 0.1, "remaining_s": 1.0},
    ]
    sample = make_sample(stats(1.0, sockets=5, faults=faults), None, received_at=1.0, started_at=0.0)
    assert sample.sockets == 4
    assert sample.faults == ("error", "outage")
    assert sample.fault_details == ("outage 7.2 s left", "error 50% until cleared", "error 10% 1.0 s left")
    assert sample.csv_row()["faults"] == "error;outage"


def test_csv_row_follows_the_contract():
    first = make_sample(stats(10.0, completed=1), None, received_at=1700000000.12345, started_at=1699999999.0)
    second = make_sample(stats(10.25, completed=21), first, received_at=1700000000.4, started_at=1699999999.0)
    row = second.csv_row()
    assert tuple(row) == SERVER_COLUMNS
    assert first.csv_row()["timestamp"] == "1700000000.123"
    assert first.csv_row()["completed_per_s"] == ""
    assert row["completed_per_s"] == "80.00"
    assert row["lag_ms"] == "12.3"
    assert row["faults"] == ""
    assert SERVER_COLUMNS[-16:] == (  # each group appended after the older columns
        "faults",
        "peak_lag_ms",
        "peak_in_flight",
        "peak_sockets",
        "server_time",
        "server_seq",
        "expired_total",
        "work_cpu_ms_total",
        "wasted_cpu_ms_total",
        "wasted_work_ratio",
        "critical_requests_total",
        "critical_completed_total",
        "critical_rejected_total",
        "sheddable_requests_total",
        "sheddable_completed_total",
        "sheddable_rejected_total",
    )
    assert row["critical_rejected_total"] == row["sheddable_requests_total"] == ""  # no split in /stats
    assert (row["server_time"], row["server_seq"]) == ("10.250", "")  # /stats' time; no series number
    # the server's own peaks; the sampler's connection is left out of sockets, as in `sockets`
    assert (row["peak_lag_ms"], row["peak_in_flight"], row["peak_sockets"]) == ("412.1", "37", "40")


def test_the_criticality_split_of_stats_becomes_its_columns_and_nothing_else_does():
    body = stats(1.0)
    body["by_criticality_total"] = {
        "critical": {"requests": 30, "completed": 29, "rejected": 1},
        "sheddable": {"requests": 70, "completed": 40, "rejected": 30},
        "bulk": {"requests": 5, "completed": 5, "rejected": 0},  # not a label of ours: left out
    }
    row = make_sample(body, None, received_at=1.0, started_at=0.0).csv_row()
    assert [row[f"critical_{e}_total"] for e in ("requests", "completed", "rejected")] == ["30", "29", "1"]
    assert [row[f"sheddable_{e}_total"] for e in ("requests", "completed", "rejected")] == ["70", "40", "30"]
    assert "bulk_requests_total" not in row
    body["by_criticality_total"] = {"critical": {"requests": "30", "completed": True}, "sheddable": []}
    row = make_sample(body, None, received_at=1.0, started_at=0.0).csv_row()
    assert all(row[name] == "" for name in SERVER_COLUMNS if name.startswith(("critical_", "sheddable_")))


def test_wasted_work_ratio_is_over_the_interval_and_restarts_after_a_reset():
    def cpu(t: float, work: float, wasted: float, **extra) -> dict:
        return {**stats(t, **extra), "work_cpu_ms_total": work, "wasted_cpu_ms_total": wasted}

    first = make_sample(cpu(1.0, 1000.0, 100.0), None, received_at=1.0, started_at=0.0)
    assert first.wasted_work_ratio is None  # no interval yet
    second = make_sample(cpu(1.25, 1200.0, 290.0), first, received_at=1.25, started_at=0.0)
    assert second.wasted_work_ratio == pytest.approx(0.95)  # 190 of the last 200 ms, not 290 / 1200
    idle = make_sample(cpu(1.5, 1200.0, 290.0), second, received_at=1.5, started_at=0.0)
    assert idle.wasted_work_ratio is None  # no work in the interval: no share
    after_reset = make_sample(cpu(1.75, 40.0, 10.0, reset_count=1), idle, received_at=1.75, started_at=0.0)
    assert after_reset.wasted_work_ratio == pytest.approx(0.25)
    row = second.csv_row()
    assert (row["work_cpu_ms_total"], row["wasted_cpu_ms_total"], row["wasted_work_ratio"]) == (
        "1200.0",
        "290.0",
        "0.950",
    )


def test_a_target_without_peaks_leaves_their_cells_empty():
    sample = make_sample(stats(1.0, peaks=False), None, received_at=1.0, started_at=0.0)
    row = sample.csv_row()
    assert (row["peak_lag_ms"], row["peak_in_flight"], row["peak_sockets"]) == ("", "", "")
    assert row["lag_ms"] == "12.3"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("<html>", "not a JSON object"),
        ({"status": "ok"}, "has no time, lag_ms"),
        ({**stats(1.0), "in_flight": "3"}, "has no in_flight"),
    ],
)
def test_anything_else_is_not_a_target(body, fragment):
    with pytest.raises(NotATarget, match=fragment):
        check_stats(body)


@pytest.mark.parametrize("raw", ["99", "10001", "fast", "-1", "2.5"])
def test_bad_sample_periods_are_one_line(raw):
    with pytest.raises(ValueError, match=r"^--server-sample-ms must be") as caught:
        SampleInterval.parse(raw)
    assert "\n" not in str(caught.value)


def test_good_sample_periods():
    assert SampleInterval.parse(" 250 ").seconds == 0.25
    assert SampleInterval.parse("0").off


def test_csv_rows_are_on_disk_before_the_file_is_closed(tmp_path: Path):
    log = CsvLog(tmp_path / "sub" / "x_server.csv", SERVER_COLUMNS)
    sample = make_sample(stats(1.0), None, received_at=1.0, started_at=0.0)
    log.write([sample.csv_row()])
    with (tmp_path / "sub" / "x_server.csv").open(newline="") as handle:  # as an interrupted run leaves it
        rows = list(csv.reader(handle))
    assert rows[0] == list(SERVER_COLUMNS)
    assert len(rows) == 2
    log.close()


# -- against real servers -------------------------------------------------------------------------------


@pytest.mark.slow
def test_samples_a_real_target_into_history_and_csv(start_target, tmp_path: Path):
    import requests

    server = start_target()
    sampler = ServerSampler(SampleInterval(100))
    sampler.open_csv(tmp_path / "run_server.csv")
    sampler.start(server.url)
    try:
        for _ in range(20):
            requests.get(server.url + "/doWork", timeout=5)
        gevent.sleep(0.5)
    finally:
        sampler.stop()
        sampler.close()
    samples = list(sampler.history)
    assert len(samples) >= 3
    assert samples[-1].completed_total == 20
    assert [s.timestamp for s in samples] == sorted(s.timestamp for s in samples)
    assert all(s.completed_per_s is not None and s.completed_per_s >= 0 for s in samples[1:])
    with (tmp_path / "run_server.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(samples)
    assert tuple(rows[0]) == SERVER_COLUMNS
    assert int(rows[-1]["completed_total"]) == 20
    # importing locust patched sockets, so samples were taken while the loop had its one request open;
    # the sampler's own connection is never counted
    assert all(int(row["sockets"]) <= 1 for row in rows), [row["sockets"] for row in rows]
    assert rows[-1]["sockets"] == "0"


@pytest.mark.slow
def test_the_last_row_counts_the_requests_sent_just_before_the_stop(start_target, tmp_path: Path):
    """The target records its status once a second here: requests sent right before the stop fall after
    its last record. At the stop the sampler waits for a record taken after it (the end of the drain)."""
    import requests

    server = start_target(log_interval_ms=1000)
    sampler = ServerSampler(SampleInterval(100))
    sampler.open_csv(tmp_path / "run_server.csv")
    sampler.start(server.url)
    try:
        gevent.sleep(0.3)  # the series is found and read
        for _ in range(10):
            assert requests.get(server.url + "/doWork", timeout=5).status_code == 200
    finally:
        sampler.stop()
        sampler.close()
    assert sampler.history[-1].requests_total == 10
    with (tmp_path / "run_server.csv").open(newline="") as handle:
        assert int(list(csv.DictReader(handle))[-1]["requests_total"]) == 10


@pytest.mark.slow
def test_peaks_keep_what_fell_between_two_samples(start_target, tmp_path: Path):
    """Ten concurrent requests that come and go between two samples a second apart: the gauges miss
    them, the peak columns do not."""
    import requests

    server = start_target()
    sampler = ServerSampler(SampleInterval(1000))
    sampler.open_csv(tmp_path / "run_server.csv")
    sampler.start(server.url)  # the first sample is taken at once
    try:
        gevent.sleep(0.2)
        burst = [gevent.spawn(requests.get, server.url + "/doWork", timeout=5) for _ in range(10)]
        gevent.joinall(burst, timeout=10, raise_error=True)
        assert all(job.value.status_code == 200 for job in burst)
        gevent.sleep(1.2)  # the second sample, after the burst
    finally:
        sampler.stop()
        sampler.close()
    with (tmp_path / "run_server.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) >= 2
    last = rows[-1]
    assert int(last["in_flight"]) == 0
    assert int(last["peak_in_flight"]) >= 5
    assert int(last["peak_sockets"]) >= 5
    assert float(last["peak_lag_ms"]) >= max(float(row["lag_ms"]) for row in rows)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_a_host_without_stats_is_said_once_and_sampling_stops(caplog):
    def not_a_target(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("404 Not Found", [("Content-Type", "text/html")])
        return [b"<h1>nope</h1>"]

    other = WSGIServer(("127.0.0.1", 0), not_a_target, log=None)
    other.start()
    sampler = ServerSampler(SampleInterval(100))
    try:
        with caplog.at_level(logging.WARNING, logger="hammerlab"):
            sampler.start(f"http://127.0.0.1:{other.server_port}")
            gevent.sleep(0.6)
    finally:
        sampler.stop()
        other.stop()
    said = [r.getMessage() for r in caplog.records if "has no Hammerlab /stats" in r.getMessage()]
    assert len(said) == 1
    assert "HTTP 404" in said[0]
    assert not sampler.history
    assert "has no Hammerlab /stats" in sampler.status


def test_an_unreachable_host_is_said_once_and_retried(caplog):
    sampler = ServerSampler(SampleInterval(100))
    sampler.base_url = f"http://127.0.0.1:{_free_port()}"
    with caplog.at_level(logging.WARNING, logger="hammerlab"):
        results = [sampler.sample_once() for _ in range(3)]
    assert results == [None, None, None]
    assert sum("cannot reach" in r.getMessage() for r in caplog.records) == 1
    assert sampler.available  # keeps trying: the server may still be starting
    assert sampler.status.startswith("cannot reach")
