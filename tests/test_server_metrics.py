"""`--server-metrics URL` and `--server-metric COLUMN=SERIES`: the server columns from a Prometheus endpoint.

Parsed by prometheus_client's parser from real exposition text; sampled from the target's own /metrics
(checked against its /stats) and from a static metrics file that a stock nginx serves (tests/nginx.py),
through the sampler, a Locust run and the comparison.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import gevent
import pytest
import requests

from locust_plugin.server_metrics import MetricsSource, read_exposition
from locust_plugin.server_sample import SampleInterval
from locust_plugin.server_sampler import ServerSampler
from locust_plugin.web_tables import server_rows
from mitigations.csv_schema import SERVER_COLUMNS
from mitigations.metrics_map import HAMMERLAB_MAPPING, SeriesMap, check_url, parse_mapping
from tests.locust_run import ROOT, run_locust
from tests.nginx import Nginx

NODE_METRICS = """\
# HELP http_requests_in_flight Requests being served
# TYPE http_requests_in_flight gauge
http_requests_in_flight {in_flight}
# HELP nodejs_eventloop_lag_seconds Lag of event loop in seconds.
# TYPE nodejs_eventloop_lag_seconds gauge
nodejs_eventloop_lag_seconds {lag}
# HELP http_requests_total Requests answered
# TYPE http_requests_total counter
http_requests_total{{code="200",method="get"}} {ok_get}
http_requests_total{{code="200",method="post"}} {ok_post}
http_requests_total{{code="500",method="get"}} {failed}
# HELP http_request_duration_seconds Request duration
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{{le="0.1"}} 3
http_request_duration_seconds_bucket{{le="+Inf"}} 4
http_request_duration_seconds_count {count}
http_request_duration_seconds_sum 0.5
"""
MAPPING = (
    "in_flight=http_requests_in_flight",
    "lag_ms=nodejs_eventloop_lag_seconds*1000",
    'completed_total=http_requests_total{code="200"}',
    'errors_per_s=http_requests_total{code="500"}',
    "rejected_per_s=http_request_duration_seconds_count",
)


def node_metrics(in_flight=7, lag=0.0125, ok_get=1000, ok_post=500, failed=30, count=4) -> str:
    return NODE_METRICS.format(
        in_flight=in_flight, lag=lag, ok_get=ok_get, ok_post=ok_post, failed=failed, count=count
    )


# -- the mapping ---------------------------------------------------------------------------------------------


def test_a_series_map_names_a_column_a_sample_its_labels_and_a_unit():
    item = SeriesMap.parse('errors_per_s = http_requests_total{code="500", method="get"} / 1000')
    assert (item.column, item.name, item.labels) == (
        "errors_per_s", "http_requests_total", (("code", "500"), ("method", "get"))
    )  # fmt: skip
    assert item.factor == pytest.approx(0.001)
    assert SeriesMap.parse("lag_ms=nodejs_eventloop_lag_seconds*1000").factor == 1000
    assert parse_mapping(None) == parse_mapping(HAMMERLAB_MAPPING)  # Hammerlab's target by default
    assert check_url("/metrics") == "/metrics" and check_url("http://127.0.0.1:9/m") == "http://127.0.0.1:9/m"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("in_flight", "is not COLUMN=SERIES"),
        ("latency=http_requests_in_flight", "'latency' is not a server column"),
        ("in_flight=9lives", "is not COLUMN=SERIES"),
        ("in_flight=x*0", "the factor must be from 1e-12 to 1e+12"),
        ("in_flight=x*-2", "is not COLUMN=SERIES"),
        ("in_flight=x{code=200}", "is not a label matcher"),
        ("in_flight=x+1", "is not COLUMN=SERIES"),
    ],
)
def test_a_bad_series_map_is_one_line(text, fragment):
    with pytest.raises(ValueError) as error:
        SeriesMap.parse(text)
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_a_column_mapped_twice_and_a_bad_url_are_refused():
    with pytest.raises(ValueError, match="'in_flight' is mapped twice"):
        parse_mapping(["in_flight=a", "in_flight=b"])
    for url in ("ftp://x/metrics", "metrics", "//host/metrics", "http://"):
        with pytest.raises(ValueError, match="is not an http"):
            check_url(url)


# -- one scrape after another ---------------------------------------------------------------------------


def test_gauges_are_read_as_they_are_and_counters_become_rates(caplog):
    source = MetricsSource("http://x/metrics", parse_mapping([*MAPPING, "sockets=no_such_series"]))
    first = source.sample(node_metrics(), received_at=100.0, started_at=99.0)
    assert (first.in_flight, first.lag_ms, first.completed_total) == (7, 12.5, 1500)
    assert first.errors_per_s is None and first.completed_per_s is None  # a rate needs two readings
    assert first.sockets is None and first.concurrent is None  # not found, and not mapped
    assert "has no sample no_such_series" in caplog.text
    second = source.sample(
        node_metrics(in_flight=2, ok_get=1100, failed=50, count=24), received_at=102.0, started_at=99.0
    )
    assert (second.in_flight, second.completed_total) == (2, 1600)  # a total stays a total ...
    assert second.completed_per_s == 50.0  # ... and its rate fills the rate column
    assert second.errors_per_s == 10.0  # a counter mapped onto a rate column: (50 - 30) / 2 s
    assert second.rejected_per_s == 10.0  # a histogram's _count is a counter too
    restarted = source.sample(node_metrics(failed=4, count=24), received_at=103.0, started_at=99.0)
    assert restarted.errors_per_s == 4.0  # it went down: the service restarted, count from zero
    assert caplog.text.count("has no sample no_such_series") == 1  # said once


def test_only_the_prometheus_format_is_read():
    with pytest.raises(ValueError):
        read_exposition('{"lag_ms": 3}')
    found = read_exposition(node_metrics())
    assert found["http_requests_total"][0].counter and not found["http_requests_in_flight"][0].counter


def test_the_target_server_tab_shows_only_what_was_mapped():
    source = MetricsSource("http://x/metrics", parse_mapping(MAPPING))
    samples = [
        source.sample(node_metrics(failed=30 + 2 * i), received_at=100.0 + i, started_at=99.0)
        for i in range(3)
    ]
    rows = server_rows(samples, "reading", True, source.columns)
    names = [row["metric"] for row in rows]
    assert names == [
        "lag ms = nodejs_eventloop_lag_seconds*1000",
        "in flight = http_requests_in_flight",
        'completed/s = http_requests_total{code="200"}',
        "rejected/s = http_request_duration_seconds_count",
        'errors/s = http_requests_total{code="500"}',
        "sampler",
    ]
    assert rows[0]["now"] == "12" and rows[4]["now"] == "2.0"


# -- against real servers -------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_targets_own_metrics_give_the_columns_its_stats_give(start_target, tmp_path: Path):
    """Hammerlab's target is simply the default mapping: its /metrics fills the same columns as /stats."""
    server = start_target(task_delay_ms=5, sync_work_ms=1)
    for _ in range(15):
        requests.get(server.url + "/doWork", timeout=5)
    server.admin("POST", "/faults", {"kind": "error", "duration_s": 30})
    for _ in range(5):
        requests.get(server.url + "/doWork", timeout=5)
    server.admin("DELETE", "/faults")
    # four requests that block the loop for 1.2 s , then sample both ways
    blocking = [
        gevent.spawn(requests.get, server.url + "/doWork?task_delay_ms=0&sync_work_ms=300", timeout=10)
        for _ in range(4)
    ]
    gevent.joinall(blocking, timeout=15)
    prometheus = ServerSampler(SampleInterval(100))
    prometheus.metrics = MetricsSource("/metrics", parse_mapping(None))
    prometheus.open_csv(tmp_path / "prom_server.csv")
    stats = ServerSampler(SampleInterval(100))
    prometheus.start(server.url)
    stats.start(server.url)
    gevent.sleep(0.5)
    prometheus.stop()
    stats.stop()
    prometheus.close()

    mine, theirs = prometheus.history[-1], stats.history[-1]
    for column in ("requests_total", "completed_total", "rejected_total", "errors_total", "in_flight"):
        assert getattr(mine, column) == getattr(theirs, column), column
    assert (mine.requests_total, mine.completed_total, mine.errors_total) == (24, 19, 5)
    assert mine.lag_ms is not None and theirs.lag_ms is not None and theirs.lag_ms > 50
    assert theirs.lag_ms / 2 < mine.lag_ms < theirs.lag_ms * 2  # in ms, as /stats says it
    assert mine.completed_per_s == 0.0 and mine.faults == ()
    assert "Prometheus" in prometheus.status
    with (tmp_path / "prom_server.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == SERVER_COLUMNS and len(rows) >= 3
    assert rows[-1]["completed_total"] == "19"
    assert rows[-1]["peak_lag_ms"] == "" and rows[-1]["server_seq"] == ""


@pytest.mark.slow
def test_a_static_metrics_file_behind_nginx_gives_rates_from_the_scrapes(tmp_path: Path):
    server = Nginx(tmp_path / "nginx", files={"metrics": node_metrics(), "index.html": "hi\n"})
    clock = [1000.0]
    sampler = ServerSampler(SampleInterval(100), wall=lambda: clock[0])
    sampler.metrics = MetricsSource(server.url + "/metrics", parse_mapping(MAPPING))
    try:
        first = sampler.sample_once()  # one scrape at a time, with the clock moved between them
        (tmp_path / "nginx" / "www" / "metrics").write_text(node_metrics(ok_get=1300, failed=90))
        clock[0] += 4.0
        second = sampler.sample_once()
        (tmp_path / "nginx" / "www" / "metrics").write_text("not { prometheus")
        clock[0] += 1.0
        broken = sampler.sample_once()
        problem = sampler.status
    finally:
        server.stop()
    assert first is not None and second is not None and broken is None
    assert first.completed_per_s is None
    assert (second.in_flight, second.lag_ms, second.completed_total) == (7, 12.5, 1800)
    assert second.completed_per_s == 75.0 and second.errors_per_s == 15.0  # 300 and 60 over 4 s
    assert "gave no Prometheus metrics" in problem
    scrapes = [line for line in server.requests() if line.startswith("GET /metrics ")]
    assert len(scrapes) == 3


@pytest.mark.slow
def test_a_locust_run_and_the_comparison_write_the_mapped_columns(tmp_path: Path):
    server = Nginx(tmp_path / "nginx", files={"metrics": node_metrics(), "index.html": "hi\n"})
    flags = [f"--server-metric={item}" for item in MAPPING]
    results = tmp_path / "results"
    try:
        run = run_locust(
            "ThrottledClient", server.url, 2, "--path", "/index.html", "--launch-rate", "20",
            "--server-metrics", "/metrics", *flags, tmp_path=tmp_path,
        )  # fmt: skip
        refused = run_locust(
            "ThrottledClient", server.url, 1, "--server-metric", "in_flight=x", tmp_path=tmp_path / "r"
        )
        compared = subprocess.run(
            [sys.executable, "-m", "comparison", "--host", server.url, "--path", "/index.html",
             "--scenario", "healthy", "--duration", "5", "--drain-s", "0", "--capacity", "40",
             "--clients", "ThrottledClient", "--results-dir", str(results),
             "--server-metrics", server.url + "/metrics", *flags],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        server.stop()

    assert run.returncode == 0, run.output[-2000:]
    with Path(f"{run.prefix}_server.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) >= 4
    seen = {(row["in_flight"], row["lag_ms"], row["completed_total"]) for row in rows}
    assert seen == {("7", "12.5", "1500")}
    assert all(row["sockets"] == "" and row["concurrent"] == "" and row["faults"] == "" for row in rows)
    assert {row["errors_per_s"] for row in rows[1:]} == {"0.00"}

    assert refused.returncode == 2 and "--server-metric needs --server-metrics URL" in refused.output

    assert compared.returncode == 0, compared.stdout[-2000:] + compared.stderr[-2000:]
    assert f"the server columns come from {server.url}/metrics" in compared.stdout
    run_dir = next(results.glob("healthy-*"))
    with (run_dir / "summary.csv").open(newline="") as handle:
        summary = next(csv.DictReader(handle))
    assert float(summary["server_max_lag_ms"]) == 12.5 and int(summary["server_max_in_flight"]) == 7
    assert summary["server_max_sockets"] == ""
    assert "report.html" in {path.name for path in run_dir.iterdir()}
    options = json.loads((run_dir / "run.json").read_text())["reproduce"]["options"]["service"]
    assert options["server_metrics"] == server.url + "/metrics" and len(options["server_metric"]) == 5
