"""The metastable scenario for real, shortened: the naive client stays stuck after the trigger, the
budgeted, throttled and adaptive clients come back, and the same naive client comes back against a target
that drops expired work (--drop-expired). Then the phase map's report in headless Chromium."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from comparison.metastable import NOT_BACK, STUCK_SHARE
from tests.browser import launch_chromium

ROOT = Path(__file__).resolve().parent.parent
# Shortened phases: 4 s steady, a 6 s trigger, 20 s after (the scenario's defaults are 10, 10 and 30).
# At 0.9 x C RetryClient drains its backlog in 5-15 s (docs/metastable.md); 20 s leaves room for the 5 s
# sustained stretch after it.
PHASES = ("--pre-trigger-s", "4", "--trigger-s", "6", "--after-trigger-s", "20", "--drain-s", "1")


def comparison(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "comparison", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def summary(results: Path) -> dict[str, dict[str, str]]:
    (run,) = [p for p in results.iterdir() if p.is_dir() and not p.is_symlink()]
    with (run / "summary.csv").open(newline="") as handle:
        return {row["client"]: row for row in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, dict[str, str]]:
    plain = tmp_path_factory.mktemp("plain")
    result = comparison("--scenario", "metastable", "--clients",
                        "NaiveRetryClient,RetryClient,SreThrottleClient,AdaptiveClient",
                        *PHASES, "--results-dir", str(plain))  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    rows = summary(plain)
    capacity = rows["NaiveRetryClient"]["capacity_rps"]
    dropping = tmp_path_factory.mktemp("dropping")
    result = comparison("--scenario", "metastable", "--clients", "NaiveRetryClient", "--drop-expired",
                        "--capacity", capacity, *PHASES, "--results-dir", str(dropping))  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    row = summary(dropping)["NaiveRetryClient"]
    (run,) = [p for p in dropping.iterdir() if p.is_dir() and not p.is_symlink()]
    with (run / "NaiveRetryClient_server.csv").open(newline="") as handle:
        row["expired_total"] = list(csv.DictReader(handle))[-1]["expired_total"]
    rows["NaiveRetryClient --drop-expired"] = row
    return rows


@pytest.mark.slow
def test_the_naive_client_stays_down_after_the_trigger(runs):
    """The stuck rule, read at 20 s: never back, and near the stuck share at the end. 20 s is shorter than
    STUCK_AFTER_S, so the verdict is not-back (the full 30 s run says stuck: docs/metastable.md). Near,
    not under: at 20 s the naive client's last 10 s sit at about a fifth of before (a fresh-clone CI run
    measured 16.8/s against 80.4/s, 21 %), so the bar is 1.5 x the share, far under the 90 % of back."""
    naive = runs["NaiveRetryClient"]
    assert naive["verdict"] == NOT_BACK, naive
    assert naive["recovered"] == "no" and naive["recovery_s"] == "never"
    before, last = float(naive["pre_trigger_slo_goodput_rps"]), float(naive["post_trigger_slo_goodput_rps"])
    assert last < 1.5 * STUCK_SHARE * before, naive
    assert float(naive["wasted_work_ratio"]) > 0.5, naive  # most of the server's CPU went to nobody
    assert float(naive["amplification"]) > 1.5, naive  # the retries that keep it there


@pytest.mark.slow
@pytest.mark.parametrize("client", ["RetryClient", "SreThrottleClient", "AdaptiveClient"])
def test_budgets_and_throttles_come_back(runs, client):
    """Back, sustained, within the shortened 20 s after-phase: every 1 s window at 90 % for 5 s from
    recovery_s on (the full run's times are in docs/metastable.md)."""
    row = runs[client]
    assert row["recovered"] == "yes" and row["verdict"] in ("quick", "slow"), row
    assert float(row["recovery_s"]) <= 14.0, row
    assert float(row["post_trigger_slo_goodput_rps"]) >= 0.9 * float(row["pre_trigger_slo_goodput_rps"])


@pytest.mark.slow
def test_dropping_expired_work_gets_the_naive_client_out(runs):
    row = runs["NaiveRetryClient --drop-expired"]
    assert row["recovered"] == "yes", row
    assert float(row["recovery_s"]) <= 14.0, row
    # The target dropped work instead of doing it. Its 504 rarely reaches the client: the header is the
    # time the client will wait, so by the time the work is found expired the client has mostly gone.
    assert row["expired_total"] and int(row["expired_total"]) > 50, row
    assert float(row["wasted_work_ratio"]) < float(runs["NaiveRetryClient"]["wasted_work_ratio"])


# -- the phase map's report -----------------------------------------------------------------------------


@pytest.mark.browser
def test_the_phase_map_renders_one_heat_map_per_client(tmp_path):
    from comparison.phase_map import Cell, read_grid, write_grid, write_report

    outcomes = ((0.0, 70.0, 0.0, "quick"), (10.0, 5.0, None, "stuck"), (20.0, 60.0, 4.0, "slow"),
                (30.0, 20.0, None, NOT_BACK))  # fmt: skip
    cells = [
        Cell(client, load, trigger, 80 * load, 80 * load, post, post > 40, recovery, 1.0, verdict, 0.5, 12.0)
        for client in ("NaiveRetryClient", "RetryClient")
        for load in (0.6, 0.9)
        for trigger, post, recovery, verdict in outcomes
    ]
    write_grid(cells, tmp_path / "phase_map.csv")
    page = tmp_path / "report.html"
    write_report(page, "phase map", read_grid(tmp_path / "phase_map.csv"), "a test grid")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            view = browser.new_page()
            view.goto(page.as_uri())
            assert view.locator("div.heatmap svg").count() == 2  # one heat map per client
            assert view.locator("#heatmap-NaiveRetryClient svg").is_visible()
            assert view.locator("#heatmap-RetryClient svg").bounding_box()["width"] > 200
            text = view.locator("#heatmap-RetryClient").inner_text()
            assert "stuck" in text and "quick 0.0 s" in text and "slow 4.0 s" in text
            assert "not back" in text and "after 12 s" in text  # the time it waited
        finally:
            browser.close()
