"""The runnable examples run: a custom locustfile on the plugin, and the pipeline without Locust."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.locust_run import ROOT, LocustRun, locust_command

pytestmark = pytest.mark.slow


def test_pipeline_runs_without_locust(start_target):
    server = start_target()
    result = subprocess.run(
        [sys.executable, "examples/pipeline_without_locust.py", server.url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    rows = [line.rsplit(":", 1) for line in result.stdout.splitlines() if "->" not in line]
    counts = {kind.strip(): int(n) for kind, n in rows}
    assert sum(counts.values()) == 300
    assert counts.get("ok", 0) > 100 and counts.get("shed:throttle", 0) > 0, counts
    assert "locust" not in result.stderr.lower()


def test_bad_usage_of_the_example_is_one_line():
    result = subprocess.run(
        [sys.executable, "examples/pipeline_without_locust.py", "localhost"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 1 and result.stderr.startswith("usage:")


def test_a_custom_locustfile_gets_the_mitigations_and_its_own_request_names(start_target, tmp_path):
    server = start_target()
    prefix = tmp_path / "custom"
    result = subprocess.run(
        locust_command(
            "--csv",
            str(prefix),
            "--max-concurrent",
            "2",
            seconds=3,
            host=server.url,
            locustfile="examples/custom_client.py",
        ),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    run = LocustRun(result.returncode, result.stdout + result.stderr, prefix)
    assert run.count("GET", "work") > 50 and run.count("GET", "health") > 20, run.output[-1500:]
    assert run.count("SHED", "work [throttle]") > 0
