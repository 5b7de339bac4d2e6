"""`python -m comparison --workers 2` with one worker SIGKILLed near the end of the run, on loopback.

The run completes; the master stops waiting for the dead worker's post-drain report as soon as Locust
marks it missing (not after the drain plus its grace); summary.csv, summary.md and report.html name the
worker and when it was lost; what it reported stays counted, and the identity holds through
`lost_with_worker`: launched = ok + server_errors + shed + unfinished + lost_with_worker.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DURATION_S = 6
KILL_AT_S = 4.0  # of the test's own clock, as the master's rows say: lost about 4 s later, in the drain


def rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def forked_workers(marker: str) -> list[int]:
    """The pids of the Locust workers `--processes` forked: processes whose command line holds `marker`
    and whose parent's does too (the master)."""
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if b"--processes" in argv and any(marker.encode() in arg for arg in argv):
            found[int(entry.name)] = parent
    return sorted(pid for pid, parent in found.items() if parent in found)


def identity(row: dict[str, str], *parts: str) -> bool:
    return int(row["launched_total"]) == sum(int(row[part] or 0) for part in parts)


@pytest.mark.slow
def test_a_worker_killed_near_the_end_is_named_and_its_calls_in_flight_counted(tmp_path):
    results = tmp_path / "results"
    command = [
        sys.executable, "-m", "comparison", "--workers", "2", "--scenario", "cliff",
        "--clients", "HammerClient", "--duration", str(DURATION_S), "--capacity", "90", "--drain-s", "1",
        "--results-dir", str(results),
    ]  # fmt: skip
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed = None
    try:
        while process.poll() is None and killed is None and time.monotonic() - started < 90:
            time.sleep(0.2)
            found = list(results.glob("*/HammerClient_mitigations.csv"))
            seen = rows(found[0]) if found else []
            workers = {row["worker"] for row in seen} - {"all"}
            late = any(float(row["elapsed_s"]) >= KILL_AT_S for row in seen)
            pids = forked_workers(str(results))
            if len(workers) == 2 and late and len(pids) == 2:
                killed = pids[0]
                os.kill(killed, signal.SIGKILL)
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    took = time.monotonic() - started
    assert killed is not None, output[-2000:]
    assert process.returncode == 0, output[-3000:]
    run = (results / "latest").resolve()
    log = (run / "HammerClient_locust.log").read_text()
    # dropped from the wait once missing, not timed out after the drain's grace
    assert "no report after the drain" not in log, f"took {took:.1f} s"

    final: dict[str, dict[str, str]] = {}
    for row in rows(run / "HammerClient_mitigations.csv"):
        final[row["worker"]] = row
    merged = final.pop("all")
    (lost,) = [worker for worker, row in final.items() if row["worker_lost_at_s"]]
    (alive,) = [worker for worker in final if worker != lost]
    assert f"worker {lost} lost" in log
    parts = ("ok_total", "server_errors_total", "shed_total", "unfinished_total", "lost_with_worker")
    for row in (final[lost], final[alive], merged):
        assert row["concurrent"] == "0" and row["pending"] == "0"
        assert identity(row, *parts), row
    assert int(final[lost]["launched_total"]) > 0  # what it reported stays counted
    assert final[alive]["lost_with_worker"] == "0"
    assert merged["lost_with_worker"] == final[lost]["lost_with_worker"]
    lost_at = float(final[lost]["worker_lost_at_s"])
    assert KILL_AT_S < lost_at < DURATION_S + 1 + 10  # after the kill, before the wait would have ended

    (summary,) = rows(run / "summary.csv")
    assert summary["lost_workers"] == f"{lost} at {lost_at:.1f} s"
    assert summary["lost_with_worker"] == merged["lost_with_worker"]
    ended = sum(int(summary[c]) for c in ("ok", "server_errors", "shed", "unfinished", "lost_with_worker"))
    assert int(summary["launched"]) == ended
    print("\nlost-worker run:", " ".join(command[1:]))
    print(",".join(summary), "\n" + ",".join(summary.values()))
    said = f"worker {lost} was lost {lost_at:.1f} s into the run"
    assert said in (run / "summary.md").read_text()
    assert said in (run / "report.html").read_text()
