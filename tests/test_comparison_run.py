"""`python -m comparison` for real: bad input, an unreachable host, a short two-class run (every file, and
numbers that agree with Locust's CSVs and the server samples), report.html in headless Chromium, and
Ctrl-C in the middle of a run."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from comparison.readers import ClassFiles, read_failures, read_server, read_stats
from comparison.summary import COLUMNS, percentile
from comparison.target import change_capacity, sync_work_ms, wait_for_overrides_to_end
from tests.browser import launch_chromium

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = ("HammerClient", "ThrottledClient")


def comparison(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "comparison", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


# -- bad input -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scenario", "meltdown"], "--scenario: 'meltdown' is not one of healthy, cliff, burst, outage"),
        (["--clients", "HammerClient,NoSuchClient"], "--clients: 'NoSuchClient' is not a user class in"),
        (["--duration", "3"], "--duration: must be from 5 to 600 seconds, got 3"),
        (["--duration", "soon"], "argument --duration: 'soon' is not a number"),
    ],
)
def test_bad_options_exit_2_with_one_line(args, message, tmp_path):
    result = comparison(*args, "--results-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # refused before anything ran


def test_unreachable_host_fails_fast(tmp_path):
    started = time.monotonic()
    result = comparison("--host", "http://127.0.0.1:9", "--results-dir", str(tmp_path), timeout=30)
    assert result.returncode == 2
    assert "--host http://127.0.0.1:9 is not reachable" in result.stderr
    assert result.stderr.count("\n") == 1
    assert time.monotonic() - started < 15  # not a 30 s run of connection errors
    assert list(tmp_path.iterdir()) == []


# -- one short real run, shared by the tests below -------------------------------------------------------


@pytest.fixture(scope="module")
def short_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess[str], Path]:
    results = tmp_path_factory.mktemp("results")
    result = comparison(
        "--scenario", "cliff", "--clients", ",".join(CLIENTS), "--duration", "5", "--probe-seconds", "1",
        "--drain-s", "3",
        "--results-dir", str(results),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result, (results / "latest").resolve()


@pytest.mark.slow
def test_a_short_run_writes_every_file(short_run):
    result, run_dir = short_run
    assert run_dir.parent.joinpath("latest").is_symlink()
    for client in CLIENTS:
        files = ClassFiles(run_dir / client)
        for path in [*files.locust_files(), *files.sampler_files()]:
            assert path.exists() and path.stat().st_size > 0, path
        assert read_stats(files.stats), files.stats
        assert len(read_server(files.server)) >= 3
        assert any(row["client"] == client and row["worker"] == "all" for row in rows(files.mitigations))
    for name in ("summary.csv", "summary.md", "report.html", "run.json"):
        assert (run_dir / name).stat().st_size > 0
    out = result.stdout
    assert "capacity C = " in out
    assert "class 1 of 2 HammerClient" in out and "class 2 of 2 ThrottledClient" in out  # the progress line
    assert re.search(r"goodput +\d+\.\d/s +errors +\d+\.\d/s", out)
    assert f"report:  {run_dir / 'report.html'}" in out
    assert out.index("goodput/s") > out.index("class 2 of 2")  # the table comes at the end
    record = json.loads((run_dir / "run.json").read_text())
    assert record["machine"]["cores"] == os.cpu_count()
    assert record["capacity"]["source"] == "closed-loop probe"


@pytest.mark.slow
def test_summary_agrees_with_locust_and_the_server_samples(short_run):
    _, run_dir = short_run
    with (run_dir / "summary.csv").open() as handle:
        assert next(csv.reader(handle)) == list(COLUMNS)
    summary = {row["client"]: row for row in rows(run_dir / "summary.csv")}
    assert list(summary) == list(CLIENTS)
    capacity = float(summary["HammerClient"]["capacity_rps"])
    for client, row in summary.items():
        files = ClassFiles(run_dir / client)
        stats = read_stats(files.stats)
        wire = [s for s in stats if s.is_wire]
        shed = [s for s in stats if s.is_shed]
        first = next(s for s in wire if (s.type, s.name) == ("GET", "/doWork"))
        successes = sum(s.count - s.failures for s in wire)
        aggregate = next(s for s in stats if s.is_aggregate)
        elapsed = aggregate.count / aggregate.rps  # the whole run, drain included
        # every launched request is accounted for, on the summary and on every sample of the ledger
        launched, ok, failed, held, unfinished = (
            int(row[name]) for name in ("launched", "ok", "server_errors", "shed", "unfinished")
        )
        assert launched == ok + failed + held + unfinished > 0, row
        samples = [r for r in rows(files.mitigations) if r["client"] == client]
        for sample in samples:
            in_flight = int(sample["concurrent"])
            parts = ("ok_total", "server_errors_total", "shed_total", "unfinished_total")
            assert int(sample["launched_total"]) == sum(int(sample[p]) for p in parts) + in_flight, sample
        final = [r for r in samples if r["worker"] == "all"][-1]
        assert final["concurrent"] == "0"  # drained: nothing left in flight
        assert (int(final["launched_total"]), int(final["ok_total"])) == (launched, ok)
        # Locust's own rows say the same: no retries here, so one wire row per answered call
        assert first.count == ok + failed and first.failures == failed == sum(
            f.occurrences for f in read_failures(files.failures) if f.method == "GET"
        )
        assert sum(s.count for s in shed) == held
        unfinished_rows = [s for s in stats if s.type == "UNFINISHED"]
        assert sum(s.count for s in unfinished_rows) == unfinished
        # goodput and SLO goodput over one duration, the whole run (never less than --duration 5), so
        # SLO goodput, a subset of the ok answers, can never be above goodput
        assert elapsed >= 4.5, (client, aggregate, row["launched"], row["skipped"])
        seconds = max(elapsed, 5)
        assert float(row["goodput_rps"]) == pytest.approx(successes / seconds, abs=0.051)
        assert float(row["slo_goodput_rps"]) == pytest.approx(int(final["slo_ok_total"]) / seconds, abs=0.051)
        assert float(row["slo_goodput_rps"]) <= float(row["goodput_rps"]), client
        intended = launched + int(row["skipped"])
        assert float(row["slo_attainment"]) == pytest.approx(int(final["slo_ok_total"]) / intended, abs=5e-4)
        assert int(row["lost"]) == launched - ok and row["kept"] == ""  # no Defer: nothing kept for later
        # full-precision percentiles from the HdrHistogram, close to Locust's two-digit ones
        for name, locust_value in (("p50_ms", first.p50), ("p99_ms", first.p99)):
            assert float(row[name]) == pytest.approx(float(final[name]), abs=0.51)
            assert float(row[name]) == pytest.approx(locust_value, rel=0.12, abs=2), (client, name)
        assert float(row["p50_ms"]) <= float(row["p99_ms"]) <= float(row["p999_ms"]) <= float(row["max_ms"])
        # the server samples
        server = read_server(files.server)
        lags = [s.lag_ms for s in server]
        # maxima: the server's own peaks since it started (it is restarted for every class), which
        # cover every sample and what fell between them; the p95 is over the samples
        peaks = server[-1]
        assert peaks.peak_lag_ms is not None and peaks.peak_lag_ms >= max(lags) - 0.051
        assert float(row["server_max_lag_ms"]) == pytest.approx(peaks.peak_lag_ms, abs=0.051)
        assert float(row["server_p95_lag_ms"]) == pytest.approx(percentile(lags, 0.95), abs=0.051)
        assert int(row["server_max_sockets"]) == peaks.peak_sockets >= max(s.sockets for s in server)
        assert int(row["server_max_in_flight"]) == peaks.peak_in_flight >= max(s.in_flight for s in server)
        assert float(row["amplification"]) <= 1.0  # no retries: shed calls are logical but never sent
        # and the two sides of the wire tell the same story
        served = max(s.completed_total for s in server)
        assert abs(served - successes) <= max(30, 0.3 * successes), (client, served, successes)
        assert 0 < float(row["goodput_rps"]) <= float(row["offered_rps"]) * 1.1
        assert int(row["skipped"]) == int(final["skipped_total"])
        assert float(row["offered_rps"]) == pytest.approx(2 * capacity, rel=0.01)
        assert row["recovery_s"] == ""
    # the signatures the table exists to show
    assert int(summary["ThrottledClient"]["shed"]) > 0
    assert summary["ThrottledClient"]["shed_kinds"].startswith("throttle=")
    assert int(summary["ThrottledClient"]["max_client_concurrent"]) <= 17
    assert int(summary["HammerClient"]["max_client_concurrent"]) > int(
        summary["ThrottledClient"]["max_client_concurrent"]
    )
    md = (run_dir / "summary.md").read_text()
    assert "Capacity C = " in md and "closed-loop probe (48 workers" in md
    assert "| " + " | ".join(COLUMNS) + " |" in md
    worst_lag = max(float(r["server_max_lag_ms"]) for r in summary.values())
    assert f"drove the server's lag to {worst_lag:,.0f} ms" in md
    # the verdict: at 2 x C the unmitigated client must not come first, because late answers do not count
    assert "The most SLO goodput came from ThrottledClient" in md
    slo = {client: float(row["slo_goodput_rps"]) for client, row in summary.items()}
    assert slo["ThrottledClient"] > slo["HammerClient"]
    assert "were still in flight" not in md


@pytest.mark.slow
@pytest.mark.browser
def test_report_renders_in_headless_chromium(short_run, tmp_path):
    from playwright.sync_api import sync_playwright

    _, run_dir = short_run
    report = run_dir / "report.html"
    outside: list[str] = []
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on(
                "request",
                lambda request: None if request.url.startswith("file:") else outside.append(request.url),
            )
            page.goto(report.as_uri())
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            header = page.locator("#summary thead th").all_inner_texts()
            first_cells = page.locator("#summary tbody tr td:first-child").all_inner_texts()
            overview_paths = page.locator("#overview svg path").count()
            grid_box = page.locator("#per-class svg").bounding_box()
            grid_text = page.locator("#per-class svg").text_content() or ""
            narrative = page.locator("#narrative").inner_text()
        finally:
            browser.close()
    assert header == list(COLUMNS)
    assert first_cells == list(CLIENTS)
    assert overview_paths > 20
    assert grid_box is not None and grid_box["width"] > 600 and grid_box["height"] > 300
    for label in ("server lag (ms)", "server sockets", "client concurrent", *CLIENTS):
        assert label in grid_text
    assert "HammerClient" in narrative
    assert outside == []  # opens offline: no CDN, nothing fetched
    assert shot.stat().st_size > 30_000


@pytest.mark.slow
def test_a_users_server_is_cleared_and_reset_between_classes(start_target, tmp_path):
    server = start_target()
    import gevent
    import requests

    earlier = [gevent.spawn(requests.get, server.url + "/doWork", timeout=10) for _ in range(40)]
    gevent.joinall(earlier, timeout=20)
    assert server.stats()["peak_in_flight"] >= 25  # an earlier peak the reset must forget
    status, _ = server.admin("POST", "/faults", {"kind": "error", "rate": 0.5})  # left over from before
    assert status == 201
    result = comparison(
        "--host", server.url, "--clients", "ThrottledClient", "--duration", "5", "--capacity", "80",
        "--rate-multiplier", "0.8", "--results-dir", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (row,) = rows(tmp_path / "latest" / "summary.csv")
    assert row["server_errors"] == "0"  # the leftover fault was cleared before the class ran
    # peaks count from the reset, not from the earlier burst
    assert int(row["server_max_in_flight"]) <= 17
    assert float(row["goodput_rps"]) > 40
    stats = server.stats()
    assert stats["faults"] == []
    assert stats["reset_count"] >= 1
    assert f"Ran against {server.url}" in (tmp_path / "latest" / "summary.md").read_text()
    assert server.proc.poll() is None  # the runner never stops a server it did not start


@pytest.mark.slow
def test_a_capacity_change_reverts_by_itself(start_target):
    server = start_target()
    assert sync_work_ms(server.url) == 10
    start, end = change_capacity(server.url, 20, 0.6)
    assert end - start == pytest.approx(0.6)
    assert sync_work_ms(server.url) == 20
    wait_for_overrides_to_end(server.url, 5)
    assert time.time() >= end - 0.1
    assert sync_work_ms(server.url) == 10


# -- Ctrl-C in the middle --------------------------------------------------------------------------------


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def wait_for(path: Path, pattern: str, timeout: float) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, path.read_text() if path.exists() else "")
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no {pattern!r} in {path} after {timeout} s:\n{path.read_text()[-2000:]}")


@pytest.mark.slow
def test_sigint_mid_run_stops_every_process_and_keeps_finished_classes(tmp_path):
    results = tmp_path / "results"
    log = tmp_path / "runner.out"
    with log.open("w") as out:
        runner = subprocess.Popen(
            [sys.executable, "-m", "comparison", "--clients", ",".join(CLIENTS), "--duration", "5",
             "--drain-s", "2", "--capacity", "70", "--results-dir", str(results)],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            second = wait_for(
                log, r"class 2 of 2: ThrottledClient; target pid (\d+).*\n\s+locust pid (\d+)", 60
            )
            time.sleep(1.5)  # the second class is sending load now
            runner.send_signal(signal.SIGINT)
            assert runner.wait(timeout=30) == 130
        finally:
            if runner.poll() is None:
                runner.kill()
    text = log.read_text()
    pids = [int(p) for p in re.findall(r"(?:target|locust) pid (\d+)", text)]
    assert len(pids) == 4, text
    assert int(second.group(1)) in pids and int(second.group(2)) in pids
    assert not [pid for pid in pids if alive(pid)]
    run_dir = next(results.glob("cliff-*"))
    assert (results / "latest").resolve() == run_dir.resolve()
    leftovers = [p.name for p in Path("/proc").iterdir() if p.name.isdigit() and str(run_dir) in _cmdline(p)]
    assert leftovers == []
    # the finished class's files are whole
    hammer = ClassFiles(run_dir / "HammerClient")
    assert read_stats(hammer.stats)[0].count > 0
    assert hammer.html.read_text().rstrip().endswith("</html>")
    assert len(read_server(hammer.server)) >= 3
    (row,) = rows(run_dir / "summary.csv")
    assert row["client"] == "HammerClient"
    record = json.loads((run_dir / "run.json").read_text())
    assert record["interrupted"] is True
    assert "interrupted" in text


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
