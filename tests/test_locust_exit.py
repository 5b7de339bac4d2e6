"""Locust's exit with --csv: no traceback from its CSV writer, whatever yields after the files are closed.

Locust 2.47's shutdown closes its CSV files but leaves the writer greenlet running (`locust.main` spawns
`stats_writer` and never keeps it); anything that yields to gevent after that (its own `--processes` exit
hook does) lets the writer write to a closed file. The plugin stops the writer as Locust starts to quit.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.locust_run import ROOT, locust_command, read_csv

pytestmark = pytest.mark.slow

# tests/late_exit_locustfile.py prints this after its late yield (not imported: that would register it)
YIELDED = "late_exit_locustfile: yielded 1.5 s after Locust closed its files"


def test_a_yield_after_locust_closed_its_csv_files_writes_nothing_to_them(start_target, tmp_path):
    server = start_target()
    prefix = tmp_path / "run"
    command = locust_command(
        "--csv", str(prefix), "--stop-timeout", "0", "HammerClient",
        seconds=1, host=server.url, locustfile="tests/late_exit_locustfile.py",
    )  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert YIELDED in output, output[-3000:]  # the late yield did happen
    assert "Traceback" not in output and "closed file" not in output, output[-3000:]
    assert result.returncode == 0, output[-3000:]
    stats = read_csv(tmp_path / "run_stats.csv")
    rows = {(r["Type"], r["Name"]): int(r["Request Count"]) for r in stats}
    assert rows[("GET", "/doWork")] > 0 and rows[("", "Aggregated")] == rows[("GET", "/doWork")]
