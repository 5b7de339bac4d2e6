"""`python -m comparison --workers 2`: each class as a Locust master with two worker processes.

The master's `all` rows must be exactly the sum of the workers' own final rows, taken after every
worker's drain (the final report used to arrive after the master had quit, leaving calls in flight in
the last row), and Locust's merged stats must agree with the merged ledger.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from comparison.readers import ClassFiles, read_stats

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = ("HammerClient", "ThrottledClient")
CAPACITY = 90.0
LEDGER = (
    "launched_total", "ok_total", "server_errors_total", "shed_total", "unfinished_total", "slo_ok_total",
)  # fmt: skip


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def distributed_run(tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("results")
    result = subprocess.run(
        [
            sys.executable, "-m", "comparison", "--workers", "2", "--scenario", "cliff",
            "--clients", ",".join(CLIENTS), "--duration", "5", "--capacity", str(CAPACITY),
            "--drain-s", "1", "--results-dir", str(results),
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=150,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "as 2 Locust workers (client instances), each offering 90.0 requests/s" in result.stdout
    return (results / "latest").resolve()


def final_rows(path: Path, client: str) -> dict[str, dict[str, str]]:
    """The last row of each worker (and of `all`) for `client`."""
    last: dict[str, dict[str, str]] = {}
    for row in rows(path):
        if row["client"] == client:
            last[row["worker"]] = row
    return last


@pytest.mark.slow
@pytest.mark.parametrize("client", CLIENTS)
def test_merged_numbers_are_the_sum_of_the_workers_own(distributed_run, client):
    files = ClassFiles(distributed_run / client)
    last = final_rows(files.mitigations, client)
    merged = last.pop("all")
    assert len(last) == 2 and "local" not in last  # two Locust workers, each with rows of its own
    assert len({row["timestamp"] for row in [*last.values(), merged]}) == 1  # one complete sample
    for name in LEDGER:
        assert int(merged[name]) == sum(int(row[name]) for row in last.values()), name
    for row in [*last.values(), merged]:  # drained everywhere, and every call counted once
        assert row["concurrent"] == "0", row
        parts = ("ok_total", "server_errors_total", "shed_total", "unfinished_total")
        assert int(row["launched_total"]) == sum(int(row[p]) for p in parts) > 0, row
    # the offered load was split evenly: each worker launched about half
    launched = [int(row["launched_total"]) for row in last.values()]
    assert min(launched) >= 0.4 * sum(launched), launched
    # the merged histogram holds every answered call of both workers
    answered = int(merged["ok_total"]) + int(merged["server_errors_total"])
    assert float(merged["max_ms"]) == max(float(row["max_ms"]) for row in last.values())
    assert answered > 0
    # Locust's own stats, merged by the master from the workers' reports, tell the same story
    stats = read_stats(files.stats)
    first = next(s for s in stats if (s.type, s.name) == ("GET", "/doWork"))
    assert first.count == answered and first.failures == int(merged["server_errors_total"])
    assert sum(s.count for s in stats if s.is_shed) == int(merged["shed_total"])
    assert sum(s.count for s in stats if s.is_unfinished) == int(merged["unfinished_total"])


@pytest.mark.slow
def test_summary_reads_the_merged_rows_and_counts_the_workers(distributed_run):
    summary = {row["client"]: row for row in rows(distributed_run / "summary.csv")}
    assert list(summary) == list(CLIENTS)
    for client, row in summary.items():
        merged = final_rows(ClassFiles(distributed_run / client).mitigations, client)["all"]
        assert row["workers"] == "2"
        assert float(row["offered_rps"]) == pytest.approx(2 * CAPACITY)
        for column, name in (
            ("launched", "launched_total"),
            ("ok", "ok_total"),
            ("shed", "shed_total"),
            ("server_errors", "server_errors_total"),
            ("unfinished", "unfinished_total"),
        ):
            assert int(row[column]) == int(merged[name]), column
        # both goodputs per second of one duration, the whole run (at least --duration 5)
        seconds = int(row["ok"]) / float(row["goodput_rps"])
        assert seconds >= 4.9
        slo_goodput = int(merged["slo_ok_total"]) / seconds
        assert float(row["slo_goodput_rps"]) == pytest.approx(slo_goodput, rel=0.01, abs=0.051)
    # per-instance caps add up: two ThrottledClient instances hold up to 2 x 16 calls in flight
    assert 16 < int(summary["ThrottledClient"]["max_client_concurrent"]) <= 34
    assert int(summary["ThrottledClient"]["shed"]) > 0
