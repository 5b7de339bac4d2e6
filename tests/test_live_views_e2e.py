"""Headless runs write PREFIX_server.csv and PREFIX_mitigations.csv; distributed runs sum the workers.

Each run is short (4-5 s) against a real target at about 2x its capacity, with a tight throttle so that
shedding shows; the mitigations' final numbers must agree with Locust's own stats rows.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from pathlib import Path

import pytest

from comparison.locust_run import distributed_args
from mitigations.csv_schema import ALL_WORKERS, LOCAL_WORKER, MITIGATION_COLUMNS, SERVER_COLUMNS
from tests.locust_run import read_csv, run_locust

ADDITIVE = (
    "concurrent",
    "launched_total",
    "completed_total",
    "wire_total",
    "wire_failures_total",
    "shed_total",
)
CLIENT = "ThrottledClient"
FLAGS = ("--max-concurrent", "4", "--json-file")


def final_counts(tmp_path: Path) -> dict[tuple[str, str], int]:
    """Locust's own final numbers (`--json-file`, written at shutdown). Its `_stats.csv` is rewritten
    only every second, so it can miss the last second of a run."""
    entries = json.loads((tmp_path / "final.json").read_text())
    return {(e["method"], e["name"]): e["num_requests"] for e in entries}


def header(path: Path) -> tuple[str, ...]:
    return tuple(path.read_text().splitlines()[0].split(","))


def by_sample(rows: list[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    samples: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        samples[row["timestamp"]].append(row)
    return samples


def check_server_csv(path: Path) -> list[dict[str, str]]:
    assert header(path) == SERVER_COLUMNS
    rows = read_csv(path)
    assert len(rows) >= 4
    stamps = [float(r["timestamp"]) for r in rows]
    assert all(later - earlier >= 0.05 for earlier, later in itertools.pairwise(stamps)), (
        "one sampler only: no interleaved rows"
    )
    totals = [int(r["completed_total"]) for r in rows]
    assert totals == sorted(totals) and totals[-1] > 0
    assert max(float(r["lag_ms"]) for r in rows) > 0
    assert all(r["completed_per_s"] != "" for r in rows[1:])
    return rows


@pytest.mark.slow
def test_headless_run_writes_both_files_and_they_agree_with_locust(start_target, tmp_path):
    server = start_target()
    run = run_locust(CLIENT, server.url, 4, *FLAGS, str(tmp_path / "final"), tmp_path=tmp_path, users=2)
    assert "Traceback" not in run.output, run.output[-3000:]
    locust = final_counts(tmp_path)
    server_rows = check_server_csv(Path(f"{run.prefix}_server.csv"))

    path = Path(f"{run.prefix}_mitigations.csv")
    assert header(path) == MITIGATION_COLUMNS
    samples = by_sample(read_csv(path))
    assert len(samples) >= 4
    for rows in samples.values():
        assert [r["worker"] for r in rows] == [LOCAL_WORKER, ALL_WORKERS]
        local, total = rows
        assert {k: v for k, v in local.items() if k != "worker"} == {
            k: v for k, v in total.items() if k != "worker"
        }
        assert int(local["throttle_in_flight"]) <= 4
    final = samples[max(samples, key=float)][1]
    shed = locust[("SHED", "/doWork [throttle]")]
    assert shed > 0
    assert int(final["wire_total"]) == locust[("GET", "/doWork")]
    # the server cannot have answered more than went on the wire, but those killed in flight at the stop
    assert int(server_rows[-1]["completed_total"]) <= int(final["wire_total"]) + 4
    assert int(final["shed_total"]) == shed
    assert final["shed_by_cause"] == f"throttle={shed}"
    assert int(final["launched_total"]) == int(final["completed_total"]) >= int(final["wire_total"]) + shed
    assert final["concurrent"] == "0" and final["breaker_state"] == "" and final["pool_in_use"] == ""


@pytest.mark.slow
def test_distributed_workers_report_to_the_master_and_the_sums_match(start_target, tmp_path):
    server = start_target()
    flags = (*distributed_args(2), *FLAGS, str(tmp_path / "final"))
    run = run_locust(CLIENT, server.url, 5, *flags, tmp_path=tmp_path, users=2)
    assert "Traceback" not in run.output, run.output[-3000:]
    locust = final_counts(tmp_path)
    check_server_csv(Path(f"{run.prefix}_server.csv"))

    samples = by_sample(read_csv(Path(f"{run.prefix}_mitigations.csv")))
    workers = {r["worker"] for rows in samples.values() for r in rows} - {ALL_WORKERS}
    assert len(workers) == 2 and LOCAL_WORKER not in workers
    for rows in samples.values():
        per_worker = [r for r in rows if r["worker"] != ALL_WORKERS]
        [total] = [r for r in rows if r["worker"] == ALL_WORKERS]
        for column in ADDITIVE:
            assert int(total[column]) == sum(int(r[column]) for r in per_worker), column
        shed = sum(int(r["shed_total"]) for r in per_worker)
        assert total["shed_by_cause"] == (f"throttle={shed}" if shed else "")
    final = samples[max(samples, key=float)]
    assert {r["worker"] for r in final} == workers | {ALL_WORKERS}
    total = next(r for r in final if r["worker"] == ALL_WORKERS)
    assert all(int(r["launched_total"]) > 0 for r in final)  # both workers' numbers arrived
    assert int(total["wire_total"]) == locust[("GET", "/doWork")]
    assert int(total["shed_total"]) == locust[("SHED", "/doWork [throttle]")] > 0
    assert total["concurrent"] == "0"  # the workers' last reports, after their users stopped
