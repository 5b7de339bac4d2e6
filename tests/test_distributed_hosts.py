"""Issue 23 for real: Locust workers on other hosts, made of network namespaces (tests/netns_hosts.py).

The target and the master live on host A (10.200.0.1) of a private world; workers run on B and C,
joined to A by veth pairs. Nothing leaves the machine: every address exists only in those namespaces.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from tests.netns_hosts import run_in_world, veth_problem

PROBLEM = veth_problem()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(PROBLEM is not None, reason=PROBLEM or "")]
LEDGER = ("ok", "server_errors", "shed", "unfinished")
CLIENTS = ("HammerClient", "ThrottledClient")  # as tests/netns_fleet.py runs them


def in_world(*args: str, timeout: float) -> dict[str, object]:
    result = run_in_world([sys.executable, "tests/netns_fleet.py", *args], timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_worker_checks_the_masters_host_with_its_own_allow_remote():
    got = in_world("guard", timeout=120)
    # B's own command line has no --allow-remote: the master's never reaches it
    assert got["refusing_rc"] == 2, got
    [line] = got["refusing_lines"]
    assert "10.200.0.1" in line and "not a loopback address" in line and "--allow-remote" in line
    assert got["from_B"] == 0, got  # not one request from the refusing worker's address
    # C allowed it on its own command line: it loads the host
    assert got["allowed_rc"] == 0 and not got["allowed_errors"], got
    assert got["from_C"] >= 20, got  # 4 s at 10/s (the master rebalanced B's user onto C)


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_comparison_drives_two_workers_on_other_hosts_class_after_class():
    got = in_world("compare", timeout=200)
    assert got["rc"] == 0, got["stdout"][-3000:] + got["stderr"]
    run = Path(str(got["run_dir"]))
    summary = rows(run / "summary.csv")
    assert [row["client"] for row in summary] == list(CLIENTS)
    fleet = rows(run / "fleet.csv")
    for row in summary:
        client = row["client"]
        assert row["workers"] == "2" and 0.5 <= float(row["jain_index"]) <= 1.0, row
        assert int(row["launched"]) == sum(int(row[name]) for name in LEDGER) > 100, row
        # the two instances ran on the two other hosts, and the summary counts are theirs, summed
        mine = [line for line in fleet if line["client"] == client]
        assert sorted(line["host"] for line in mine) == ["host-b", "host-c"], mine
        for name in ("launched", "ok", "shed", "unfinished"):
            assert sum(int(line[name]) for line in mine) == int(row[name]), name
        # the ledger identity on every row, each worker's and the sums, through the whole run
        samples = rows(run / f"{client}_mitigations.csv")
        assert {line["worker"] for line in samples} == {"all", *(line["worker"] for line in mine)}
        for line in samples:
            parts = (
                "ok_total",
                "server_errors_total",
                "shed_total",
                "unfinished_total",
                "pending",
                "concurrent",
            )
            assert int(line["launched_total"]) == sum(int(line[p] or 0) for p in parts), line
    assert "not reset (its /admin answers clients on its own machine only)" in got["stdout"]
