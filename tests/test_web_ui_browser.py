"""The whole lab in one window: `locust --class-picker`, driven by headless Chromium through Playwright.

Debian's /usr/bin/chromium, never a browser download. The steps follow issue 4: pick the clients, start
from the UI, watch both tabs change, start an outage from the fault control and see BreakerClient's
breaker open, download both CSVs. Screenshots go to the test's temp dir, and also to
$HAMMERLAB_SCREENSHOT_DIR when set (that is how docs/*.png are made: see the README).
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from comparison.locust_run import distributed_args, free_port
from mitigations.csv_schema import MITIGATION_COLUMNS, SERVER_COLUMNS
from tests.browser import launch_chromium
from tests.locust_run import LOCUST, ROOT

SCREENSHOT_DIR = "HAMMERLAB_SCREENSHOT_DIR"
READY_S = 30.0
ROWS_JS = """() => Array.from(document.querySelectorAll('.MuiTableContainer-root tbody tr'))
    .map(tr => Array.from(tr.cells).map(td => td.innerText.trim()))"""
MITIGATION_CELLS = ("client", "worker", "concurrent", "launched", "shed", "causes", "breaker", "transitions")

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture
def locust_web(start_target, tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """A target at about 2x what the two clients together can get through, and `locust --class-picker`."""
    target = start_target()
    argv = ["--class-picker", "--launch-rate", "50", "--max-concurrent", "4", "--stop-timeout", "0"]
    with web_ui(target, argv, tmp_path) as url:
        yield url, target


@contextmanager
def web_ui(target: Any, args: list[str], tmp_path: Path) -> Iterator[str]:
    """`locust ARGS` with its web UI on a free loopback port, against `target`; its URL once it answers."""
    port = free_port()
    log = (tmp_path / "locust.log").open("wb")
    argv = [LOCUST, "--web-host", "127.0.0.1", "--web-port", str(port), "--host", target.url, *args]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_S
        while True:
            try:
                with urllib.request.urlopen(url + "/", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((tmp_path / "locust.log").read_text()[-2000:]) from None
                time.sleep(0.2)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


def wait_for(page: Any, probe: Callable[[], Any], what: str, timeout_s: float = 15.0) -> Any:
    """Poll `probe` until it returns something truthy; the UI refreshes its tables every 2 s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        page.wait_for_timeout(250)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def server_table(page: Any) -> dict[str, list[str]]:
    return {cells[0]: cells for cells in page.evaluate(ROWS_JS) if cells}


def mitigations_table(page: Any) -> dict[str, dict[str, str]]:
    rows = [dict(zip(MITIGATION_CELLS, cells, strict=False)) for cells in page.evaluate(ROWS_JS)]
    return {row["client"]: row for row in rows if "client" in row}


def shed_by_throttle(row: dict[str, str] | None) -> int:
    found = re.search(r"throttle=(\d+)", (row or {}).get("causes", ""))
    return int(found.group(1)) if found else 0


TAB_KEYS = {"Target server": ("target-server", "Server"), "Mitigations": ("mitigations", "Client")}


def open_tab(page: Any, name: str) -> None:
    """Click a tab and wait until its own table (not the last tab's) is drawn."""
    key, first_column = TAB_KEYS[name]
    page.get_by_role("tab", name=name).click()
    page.wait_for_url(f"**/?tab={key}")
    page.wait_for_function(
        """(title) => {
            const head = document.querySelector('.MuiTableContainer-root thead th');
            return head && head.innerText.trim() === title
                && document.querySelector('.MuiTableContainer-root tbody tr') !== null;
        }""",
        arg=first_column,
    )
    if key == "target-server":
        page.wait_for_selector("#hammerlab-faults", state="visible")
    else:
        page.wait_for_selector("#hammerlab-faults", state="detached")


def screenshot(page: Any, tmp_path: Path, name: str) -> Path:
    page.wait_for_timeout(500)  # let the tab indicator finish sliding
    path = tmp_path / name
    page.screenshot(path=str(path))
    if os.environ.get(SCREENSHOT_DIR):
        target = Path(os.environ[SCREENSHOT_DIR])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target / name)
    return path


def download(page: Any, link_text: str, tmp_path: Path) -> list[dict[str, str]]:
    with page.expect_download() as caught:
        page.get_by_text(link_text).click()
    path = tmp_path / caught.value.suggested_filename
    caught.value.save_as(path)
    text = path.read_text()
    return list(csv.DictReader(io.StringIO(text))), tuple(text.splitlines()[0].split(","))


def test_the_lab_in_the_browser(locust_web, tmp_path: Path):
    from playwright.sync_api import sync_playwright

    url, target = locust_web
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 820})
            page.set_default_timeout(15_000)
            page.goto(url + "/")

            # 2. pick the clients and start from the UI
            page.wait_for_selector("text=ThrottledClient")
            page.locator("input[type=checkbox]").first.uncheck()  # "all classes"
            for name in ("ThrottledClient", "BreakerClient"):
                page.locator("tr", has_text=name).locator("input[type=checkbox]").check()
            page.fill("input[name=userCount]", "2")
            page.fill("input[name=spawnRate]", "2")
            page.get_by_role("button", name="Start").click()

            # 3. both tabs, live and changing
            open_tab(page, "Target server")
            wait_for(
                page, lambda: server_table(page).get("lag ms", ["", "-"])[1] != "-", "a first /stats sample"
            )
            seen = set()
            lags = []
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline and len(seen) < 3:
                rows = server_table(page)
                seen.add((rows["lag ms"][1], rows["sockets"][1], rows["in flight"][1]))
                lags.append(float(rows["lag ms"][1]))
                page.wait_for_timeout(500)
            assert len(seen) >= 2, f"the Target server tab did not change: {seen}"
            assert max(lags) > 0
            assert server_table(page)["lag ms"][4], "a sparkline of the last 30 s"

            open_tab(page, "Mitigations")
            rows = wait_for(
                page, lambda: (t := mitigations_table(page)).get("ThrottledClient") and t, "client rows"
            )
            assert rows["BreakerClient"]["breaker"] == "closed"
            first = wait_for(
                page, lambda: shed_by_throttle(mitigations_table(page).get("ThrottledClient")), "shedding"
            )
            wait_for(
                page,
                lambda: shed_by_throttle(mitigations_table(page).get("ThrottledClient")) > first,
                "more shedding",
            )

            # 4. an outage from the fault control: the breaker opens
            open_tab(page, "Target server")
            page.fill("input[name=outage-duration_s]", "8")
            page.click("button[data-fault=outage]")
            wait_for(
                page, lambda: "started outage" in page.inner_text("#hammerlab-faults"), "the fault control"
            )
            assert [f["kind"] for f in target.stats()["faults"]] == ["outage"]
            wait_for(
                page, lambda: "outage" in server_table(page)["active faults"][1], "the outage in the table"
            )
            screenshot(page, tmp_path, "target-server-tab.png")

            open_tab(page, "Mitigations")
            breaker = wait_for(
                page,
                lambda: (
                    (row := mitigations_table(page).get("BreakerClient")) and row["breaker"] == "open" and row
                ),
                "BreakerClient's breaker to open",
            )
            assert "closed→open" in breaker["transitions"]
            screenshot(page, tmp_path, "mitigations-breaker.png")

            # 5. both CSVs from the Download Data tab
            page.get_by_role("tab", name="Download Data").click()
            server_rows, server_header = download(page, "Download target server samples CSV", tmp_path)
            assert server_header == SERVER_COLUMNS
            assert len(server_rows) >= 10
            assert any(row["faults"] == "outage" for row in server_rows)
            mitigation_rows, mitigation_header = download(page, "Download mitigations CSV", tmp_path)
            assert mitigation_header == MITIGATION_COLUMNS
            assert any(
                r["client"] == "BreakerClient" and r["breaker_state"] == "open" for r in mitigation_rows
            )
            assert max(int(r["shed_total"]) for r in mitigation_rows if r["client"] == "ThrottledClient") > 0

            page.request.delete(url + "/hammerlab/faults")
        finally:
            browser.close()
    # 6. the screenshots are there
    assert (tmp_path / "target-server-tab.png").stat().st_size > 10_000
    assert (tmp_path / "mitigations-breaker.png").stat().st_size > 10_000


TRENDS_JS = """() => Array.from(document.querySelectorAll('#hammerlab-trends tbody tr')).map(tr => ({
    client: tr.dataset.client, worker: tr.dataset.worker,
    sparks: Array.from(tr.querySelectorAll('.hammerlab-spark')).map(s => s.innerText.trim()),
    now: Array.from(tr.querySelectorAll('.hammerlab-now')).map(s => s.innerText.trim())}))"""
TREND_POINTS = 8  # bars per sparkline before the test looks: about 6 s of a master's samples


def drawn_trends(page: Any) -> list[dict[str, Any]] | None:
    """The trends once each worker and `all` has TREND_POINTS bars of all four, and each limit has moved."""
    rows = page.evaluate(TRENDS_JS)
    if len(rows) != 3 or [row["worker"] == "all" for row in rows] != [False, False, True]:
        return None
    if any(len(spark) < TREND_POINTS for row in rows for spark in row["sparks"]):
        return None
    if any(len(set(row["sparks"][0])) < 2 for row in rows):
        return None
    return rows


def test_the_mitigations_tab_shows_each_workers_limit_finding_its_way(start_target, tmp_path: Path):
    """AdaptiveClient in two worker processes, each launching 90/s at a target that serves about 90/s:
    above the Mitigations table, a row per worker and one for `all`, each with the last seconds of the
    limit, calls in flight, SLO goodput/s and shed/s as sparklines, the limits moving as they search."""
    from playwright.sync_api import sync_playwright

    target = start_target()
    args = [*distributed_args(2), "--autostart", "-u", "2", "-r", "2", "--run-time", "45s"]
    args += ["--launch-rate", "90", "--stop-timeout", "0", "AdaptiveClient"]
    with web_ui(target, args, tmp_path) as url, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 820})
            page.set_default_timeout(15_000)
            page.goto(url + "/")
            open_tab(page, "Mitigations")
            rows = wait_for(page, lambda: drawn_trends(page), "a sparkline per worker and metric", 30.0)
            assert {row["client"] for row in rows} == {"AdaptiveClient"}
            limits = [int(row["now"][0]) for row in rows]
            assert limits[2] == limits[0] + limits[1] > 0  # one sample: `all` is the workers' sum
            assert float(rows[2]["now"][2]) > 0  # SLO goodput
            if os.environ.get(SCREENSHOT_DIR):
                page.wait_for_timeout(15_000)  # a fuller 30 s for the docs
            screenshot(page, tmp_path, "mitigations-tab.png")
        finally:
            browser.close()
    assert (tmp_path / "mitigations-tab.png").stat().st_size > 10_000
