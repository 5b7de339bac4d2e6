"""A launch rate far beyond what one process can do never runs away: Locust honours -t and SIGINT, the
launcher skips what it cannot launch and says so, and the run's CSVs are written."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from tests.locust_run import LOCUST, ROOT, read_csv

pytestmark = pytest.mark.slow


def locust(host: str, tmp_path, *extra: str, ignore_sigint: bool = False) -> subprocess.Popen[str]:
    def inherit_an_ignored_sigint() -> None:  # as a shell does for a background job (`locust ... &`)
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    return subprocess.Popen(
        [LOCUST, "-f", "locustfiles", "--headless", "-u", "1", "-H", host, "--launch-rate", "100000",
         "--path", "/ping", "--drain-s", "1", "--csv", str(tmp_path / "run"), "--only-summary", *extra,
         "HammerClient"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=inherit_an_ignored_sigint if ignore_sigint else None,
    )  # fmt: skip


def test_an_impossible_rate_still_ends_on_time_and_reports_its_skipped_slots(start_target, tmp_path):
    server = start_target()
    started = time.monotonic()
    process = locust(server.url, tmp_path, "-t", "2s")
    output, _ = process.communicate(timeout=40)
    took = time.monotonic() - started
    assert process.returncode in (0, 1), output[-2000:]
    assert took < 20, took  # 2 s of load, a 1 s drain, start-up and shut-down; not minutes
    assert "the load generator could not keep the rate" in output
    (total,) = [r for r in read_csv(tmp_path / "run_mitigations.csv") if r["worker"] == "all"][-1:]
    assert int(total["skipped_total"]) > int(total["launched_total"]) > 100
    launched = int(total["launched_total"])
    finals = ("ok_total", "server_errors_total", "shed_total", "unfinished_total")
    assert launched == sum(int(total[name]) for name in finals)


@pytest.mark.parametrize("ignored", [False, True], ids=["terminal", "background-job"])
def test_sigint_stops_an_impossible_rate_at_once(start_target, tmp_path, ignored):
    server = start_target()
    process = locust(server.url, tmp_path, "-t", "60s", ignore_sigint=ignored)
    time.sleep(3)
    assert process.poll() is None
    process.send_signal(signal.SIGINT)
    started = time.monotonic()
    output, _ = process.communicate(timeout=60)
    # a 1 s drain, then thousands of calls in flight are ended and written: seconds, not the 60 s run
    assert time.monotonic() - started < 25, output[-2000:]
    assert (tmp_path / "run_stats.csv").stat().st_size > 0
