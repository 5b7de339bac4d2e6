"""Ctrl-C at any point of `python -m comparison` leaves results/latest on the interrupted run, with a
summary that says what finished, possibly nothing (issue 10, finding 12). The interrupt during a later
class is in test_comparison_run.py."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def start(results: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """A comparison run whose results folder already has a finished earlier run behind `latest`."""
    earlier = results / "cliff-20000101T000000Z"
    earlier.mkdir(parents=True)
    (earlier / "summary.md").write_text("# an earlier run\n")
    (results / "latest").symlink_to(earlier.name)
    argv = [sys.executable, "-m", "comparison", "--clients", "HammerClient", "--duration", "5", *args]
    with log.open("wb") as out:
        return subprocess.Popen([*argv, "--results-dir", str(results)], cwd=ROOT, stdout=out, stderr=out)


def wait_for(log: Path, pattern: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not re.search(pattern, log.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.05)


def interrupt(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


def check_left_behind(results: Path, log: Path, stage: str) -> None:
    run_dirs = [p for p in results.glob("cliff-*") if not p.name.startswith("cliff-2000")]
    assert len(run_dirs) == 1
    run_dir = run_dirs[0]
    assert os.readlink(results / "latest") == run_dir.name
    record = json.loads((run_dir / "run.json").read_text())
    assert record["interrupted"] is True
    summary = (run_dir / "summary.md").read_text()
    assert "interrupted before any class finished" in summary
    assert f"Interrupted {stage}: no class finished" in summary
    assert (run_dir / "summary.csv").read_text().startswith("client,")
    assert "Traceback" not in log.read_text()


def test_ctrl_c_during_the_probe(tmp_path):
    results, log = tmp_path / "results", tmp_path / "out.log"
    proc = start(results, log, "--probe-seconds", "3")
    wait_for(log, r"writing ", proc)
    time.sleep(1.0)  # the probe is running
    assert interrupt(proc) == 130
    check_left_behind(results, log, "while measuring the capacity")


def test_ctrl_c_during_the_first_class(tmp_path):
    results, log = tmp_path / "results", tmp_path / "out.log"
    proc = start(results, log, "--capacity", "70")
    wait_for(log, r"locust pid \d+", proc)
    time.sleep(1.0)  # the first class is sending load
    assert interrupt(proc) == 130
    check_left_behind(results, log, "in the first class")
