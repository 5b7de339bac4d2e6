"""Losing a worker between hosts: a Locust master and the target on host A, one worker on each of hosts B
and C, hosts made of network namespaces joined by veth pairs (tests/netns_hosts.py; nothing leaves the
machine). C is cut off (its veth down) and brought back; B is SIGKILLed (tests/netns_lost_worker.py).

- B is named lost, with the time, in its rows and in the summary row worked out from the files; what it
  reported stays counted and the identity holds through `lost_with_worker`;
- C was lost while cut off and is not at the end: its cumulative reports replaced each other, so it is
  counted once (its launches fit its own launch rate) and nothing of it is in `lost_with_worker`.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from comparison.config import RunConfig, build_plan
from comparison.readers import ClassFiles
from comparison.summary import ClassResult, summarise
from tests.netns_hosts import run_in_world, veth_problem
from tests.netns_lost_worker import RATE, RUN_S

SCRIPT = Path(__file__).with_name("netns_lost_worker.py")
PARTS = ("ok_total", "server_errors_total", "shed_total", "unfinished_total", "pending", "concurrent",
         "lost_with_worker")  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    problem = veth_problem()
    if problem:
        pytest.skip(problem)
    out = tmp_path_factory.mktemp("lost-netns")
    result = run_in_world([sys.executable, str(SCRIPT), str(out)], timeout=150)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    said = json.loads(result.stdout.strip().splitlines()[-1])
    assert said["returncode"] == 0, (out / "master.log").read_text()[-3000:]
    with Path(said["prefix"] + "_mitigations.csv").open(newline="") as handle:
        said["rows"] = list(csv.DictReader(handle))
    said["log"] = (out / "master.log").read_text()
    return said


def finals(rows: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    last: dict[str, dict[str, str]] = {}
    for row in rows:
        last[row["worker"].split("_")[0]] = row  # host-b_<uuid> -> host-b
    return last


@pytest.mark.slow
def test_a_killed_worker_on_another_host_is_named_and_the_identity_holds(run):
    last = finals(run["rows"])
    assert set(last) == {"host-b", "host-c", "all"}
    for row in last.values():
        assert int(row["launched_total"]) == sum(int(row[p] or 0) for p in PARTS), row
    b = last["host-b"]
    lost_at = float(b["worker_lost_at_s"])
    assert run["times"]["kill"] < lost_at < run["times"]["kill"] + 8  # Locust's ~4 s liveness window
    assert int(b["launched_total"]) > 0 and b["concurrent"] == "0"
    assert last["all"]["lost_with_worker"] == b["lost_with_worker"]
    # the summary row, worked out from these files as the comparison does
    config = RunConfig(scenario="healthy", clients=("HammerClient",), duration_s=RUN_S, workers=2)
    plan = build_plan(config, 40)
    summary = summarise(ClassResult("HammerClient", ClassFiles(Path(run["prefix"]))), plan)
    assert summary.lost_workers == f"{b['worker']} at {lost_at:.1f} s"
    assert summary.lost_with_worker == int(b["lost_with_worker"]) and summary.accounted
    assert summary.workers == 2


@pytest.mark.slow
def test_a_worker_cut_off_and_back_is_counted_once(run):
    c_rows = [row for row in run["rows"] if row["worker"].startswith("host-c")]
    worker = c_rows[0]["worker"]
    while_cut = [row for row in c_rows if row["worker_lost_at_s"]]
    assert while_cut, "the master never marked the cut-off worker lost"
    assert run["times"]["cut"] < float(while_cut[0]["worker_lost_at_s"]) < run["times"]["restore"] + 2
    assert run["log"].count(f"worker {worker} lost") == 1  # and not again while Locust re-dispatches
    assert f"worker {worker}, lost" in run["log"] and "reports again" in run["log"]
    last = finals(run["rows"])
    c = last["host-c"]
    assert c["worker_lost_at_s"] == "" and c["lost_with_worker"] == "0" and c["concurrent"] == "0"
    # counted once: its launches fit its own rate over the run, and `all` is B's plus C's
    assert int(c["launched_total"]) + int(c["skipped_total"]) <= RATE * (RUN_S + 1)
    assert int(c["launched_total"]) > RATE * run["times"]["cut"]
    b_and_c = int(last["host-b"]["launched_total"]) + int(c["launched_total"])
    assert int(last["all"]["launched_total"]) == b_and_c
