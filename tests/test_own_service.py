"""Testing your own service (issue 11, items 1, 2, 5, 6): the comparison against a stock nginx, the
gentle ramp probe, CI gates with JUnit, and reproducible runs (`--rerun`, `--baseline`).

nginx is Debian's package (`make test` installs it), run with its own config in a temp folder
(tests/nginx.py); its access log shows every request it answered, with the test header and the agent.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree

import pytest

from comparison.__main__ import main
from comparison.gates import GateError, parse_gate
from comparison.probe_ramp import RampError, plateaued, ramp
from mitigations.request import RequestSpec, parse_header
from tests.locust_run import LOCUST, ROOT
from tests.nginx import NGINX, Nginx

needs_nginx = pytest.mark.skipif(not Path(NGINX).exists(), reason="needs nginx (make test installs it)")


def comparison(*args: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "comparison", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


# -- gates: the expression parser ---------------------------------------------------------------------------


def test_a_gate_names_a_client_or_every_client():
    gate = parse_gate("AdaptiveClient: slo_goodput_rps >= 0.9*capacity_rps")
    assert (gate.client, gate.left, gate.op, gate.right) == (
        "AdaptiveClient",
        "slo_goodput_rps",
        ">=",
        "0.9*capacity_rps",
    )
    assert parse_gate("*: server_errors == 0").client == "*"
    assert parse_gate("-(p99_ms - 5) / 2 < (max_ms + 1)").client == "*"


@pytest.mark.parametrize(
    ("text", "token"),
    [("*: p99_ms ** 2 < 5", "'**'"), ("*: p99_ms % 2 < 5", "'%'"), ("*: foo > 1", "'foo'"),
     ("*: __import__('os').system('x') == 0", "__import__"), ("*: p99_ms.real > 1", "p99_ms.real"),
     ("*: p99_ms < 5 < 6", "one comparison"), ("*: p99_ms", "no comparison"), ("*: p99_ms >= ", "end of"),
     ("*: p99_ms > 'a'", "'a'"), ("*: server_error_kinds == 0", "server_error_kinds"),
     ("*: p99_ms >> 1 > 0", "'>>'"),
     ("*: p99_ms > 1 and ok > 1", "and")],
)  # fmt: skip
def test_a_bad_gate_is_one_line_naming_the_token(text, token):
    with pytest.raises(GateError) as error:
        parse_gate(text)
    assert token in str(error.value) and "\n" not in str(error.value)


def test_the_runner_refuses_a_bad_gate_before_anything_runs(tmp_path):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["--check", "*: slo_goodput_rps >= 0.9*capacity_rps**2", "--results-dir", str(tmp_path)])
    assert code == 2
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1 and "--check" in lines[0] and "'**'" in lines[0]
    with contextlib.redirect_stderr(err := io.StringIO()):
        assert main(["--clients", "HammerClient", "--check", "AdaptiveClient: ok > 0"]) == 2
    assert "AdaptiveClient is not in --clients" in err.getvalue()
    assert list(tmp_path.iterdir()) == []


# -- the request --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "named"),
    [("X-Test", "Name: value"), ("Host: evil.example", "Host"), ("Bad Name: x", "'Bad Name'"),
     ("X-A: a\r\nX-B: b", "control"), ("Content-Length: 5", "Content-Length")],
)  # fmt: skip
def test_a_bad_header_is_refused_with_one_line(header, named):
    with pytest.raises(ValueError) as error:
        parse_header(header)
    assert named in str(error.value) and "\n" not in str(error.value)


@pytest.mark.slow
def test_locust_refuses_a_bad_request_option_with_one_line(tmp_path):
    for args, said in (
        (["--header", "Host: x"], "argument --header: Host is set by the client itself"),
        (["--method", "BREW"], "argument --method: 'BREW' is not one of GET"),
        (["--body-file", str(tmp_path / "missing")], "is not a file"),
        (["--body", "x", "--body-file", __file__], "give --body or --body-file, not both"),
    ):
        result = subprocess.run(
            [LOCUST, "--headless", "-u", "1", "-t", "1s", *args, "HammerClient"],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 2, (args, result.stderr[-500:])
        assert said in result.stderr.strip().splitlines()[-1]


# -- the gentle probe ---------------------------------------------------------------------------------------


def test_the_ramp_goes_on_past_one_low_step_and_stops_after_two():
    """The lab's curve (28, 47, 58, 71, 81, 86/s at 1..32 workers) with one step that came out low on a
    busy machine: one low step is noise, two in a row are the knee."""
    assert not plateaued([28.0, 47.0])  # too few steps to tell
    assert not plateaued([28.0, 47.0, 40.0])  # one low step: go on
    assert not plateaued([28.0, 47.0, 40.0, 71.0])  # and it grew again over the best so far
    assert not plateaued([28.0, 47.0, 58.0, 71.0, 81.0, 86.0])  # 81 to 86 is one flat doubling
    assert plateaued([28.0, 47.0, 58.0, 71.0, 81.0, 86.0, 88.0])  # two: the knee is behind
    assert plateaued([28.0, 47.0, 40.0, 45.0])  # two that did not beat 47 by 10 %


@pytest.mark.slow
def test_the_ramp_stops_at_the_knee_under_the_ceiling_and_at_the_first_error(start_target):
    target = start_target()  # about 90 requests/s at most, reached only with many in flight
    found = ramp(target.url, RequestSpec(), slo_ms=1000, max_rps=500, step_s=0.6)
    concurrencies = [s.concurrency for s in found.steps]
    assert concurrencies == [1, 2, 4, 8, 16, 32, 64, 128][: len(concurrencies)] and len(concurrencies) >= 3
    assert "stopped growing" in found.stopped and not found.at_ceiling
    assert 55 <= found.capacity_rps <= 115 and found.knee >= 4
    assert all(s.failed == 0 and s.p99_ms is not None for s in found.steps)
    assert found.steps[-1].p99_ms > found.steps[0].p99_ms  # queueing: latency grows with concurrency

    time.sleep(1.5)  # let the requests the first ramp left inside the server finish
    tight = ramp(target.url, RequestSpec(), slo_ms=150, max_rps=500, step_s=0.6)
    assert tight.stopped.startswith("p99") and tight.steps[-1].p99_ms > 150
    knee = next(s for s in tight.steps if s.concurrency == tight.knee)
    assert knee.p99_ms <= 150 and tight.knee < tight.steps[-1].concurrency

    capped = ramp(target.url, RequestSpec(), slo_ms=1000, max_rps=20, step_s=0.6)
    assert capped.at_ceiling and capped.knee <= 2 and capped.capacity_rps >= 18  # 30/s possible at 1
    assert all(step.throughput_rps <= 20 * 1.1 for step in capped.steps)  # the pacer holds the ceiling

    failing = start_target(fault=["error:rate=0.5"])
    with pytest.raises(RampError) as error:
        ramp(failing.url, RequestSpec(), slo_ms=1000, max_rps=500, step_s=0.6)
    assert "failed at concurrency 1 (5xx=" in str(error.value) and "--capacity" in str(error.value)


# -- the comparison against nginx ---------------------------------------------------------------------------


@pytest.mark.slow
@needs_nginx
def test_the_comparison_runs_against_nginx_and_reruns_with_a_baseline(tmp_path):
    server = Nginx(tmp_path / "nginx")
    results = tmp_path / "results"
    junit = tmp_path / "gates.xml"
    try:
        refused = comparison("--host", server.url, "--scenario", "outage", "--path", "/index.html")
        missing = comparison("--host", server.url, "--path", "/missing", "--clients", "HammerClient")
        checked = len(server.requests())
        first = comparison(
            "--host", server.url, "--scenario", "healthy", "--duration", "5", "--drain-s", "0",
            "--clients", "HammerClient", "--max-probe-rps", "60", "--probe-seconds", "1.5",
            "--header", "X-Hammerlab-Test: yes", "--results-dir", str(results), "--junit", str(junit),
            "--check", "*: server_errors == 0", "--check", "HammerClient: slo_goodput_rps >= 2*capacity_rps",
            "--", "--path", "/index.html",
        )  # fmt: skip
        after_first = server.requests()
        run = next(results.glob("healthy-*"))
        again = comparison("--rerun", str(run), "--baseline", str(run))
        after_again = server.requests()
    finally:
        server.stop()

    # a scenario that needs faults, and a request that does not succeed: one line each, no load
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "--scenario outage" in refused.stderr and "is not one" in refused.stderr
    assert missing.returncode == 2 and "answered 404 to GET /missing" in missing.stderr
    assert checked == 4  # each asked /stats, then sent the user's request once

    # the run: the one-line notice, the ramp's table, the gate that failed with its value, JUnit
    assert first.returncode == 1, first.stdout[-3000:] + first.stderr[-2000:]
    assert "is not a Hammerlab target_server (no /stats)" in first.stdout
    failed = [line for line in first.stdout.splitlines() if line.startswith("gate FAILED")]
    assert len(failed) == 1 and "HammerClient: slo_goodput_rps >= 2*capacity_rps" in failed[0]
    assert "slo_goodput_rps = " in failed[0] and "2*capacity_rps = " in failed[0]
    assert "gates: 1 passed, 1 failed" in first.stdout
    summary = (run / "summary.md").read_text()
    assert "## Capacity probe" in summary and "| concurrency | throughput/s | p50 ms | p99 ms |" in summary
    assert "(knee)" in summary and "--max-probe-rps" in summary  # nginx outruns a 60/s ceiling
    row = next(line for line in summary.splitlines() if line.startswith("| HammerClient |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[2] and 45 <= float(cells[2]) <= 63  # capacity_rps: the ceiling, not nginx's real C
    assert int(cells[8]) == int(cells[9]) > 100 and cells[10] == "0"  # launched == ok, no server errors
    cases = ElementTree.parse(junit).getroot().iter("testcase")
    assert [(c.get("name"), c.find("failure") is not None) for c in cases] == [
        ("server_errors == 0", False),
        ("slo_goodput_rps >= 2*capacity_rps", True),
    ]

    # the probe and the clients sent the same request: only GET /index.html with the header, no /doWork
    load = [line for line in after_first[checked:] if "/stats" not in line]
    assert len(load) > 100
    assert all(line.startswith("GET /index.html 200 test=yes") for line in load), load[:3]

    # run.json holds what a rerun needs; --rerun repeats it into a new folder beside the first
    record = json.loads((run / "run.json").read_text())["reproduce"]
    assert record["argv"][-2:] == ["--path", "/index.html"] and "--junit" in record["argv"]
    assert record["target"]["kind"] == "other" and record["target"]["server"].startswith("nginx")
    assert record["git"]["commit"] and record["versions"]["locust"] == "2.47.0"
    assert record["request"]["headers"] == ["X-Hammerlab-Test: yes"]
    assert again.returncode == 1, again.stderr[-2000:]
    runs = sorted(results.glob("healthy-*"))
    assert len(runs) == 2 and runs[0] == run
    repeated = json.loads((runs[1] / "run.json").read_text())["reproduce"]["argv"]
    assert without(repeated, "--results-dir", "--baseline") == without(record["argv"], "--results-dir")
    assert len(after_again) > len(after_first) + 100

    # --rerun with --baseline: the report overlays the first run's curves (dashed) on the new ones
    page = (runs[1] / "report.html").read_text()
    assert f'id="baseline">Against the baseline {run.name}' in page
    overlay = page[page.index('id="baseline-overlay"') : page.index('id="baseline-table"')]
    assert "HammerClient (this run)" in overlay and "HammerClient (baseline)" in overlay
    table = page[page.index('id="baseline-table"') :].split("</table>")[0]
    assert table.count("<tr>") == 2 and "HammerClient" in table


def without(argv: list[str], *flags: str) -> list[str]:
    """argv without these options and their values."""
    kept: list[str] = []
    for token in argv:
        if kept and kept[-1] in flags:
            kept.pop()
        else:
            kept.append(token)
    return kept


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_rerun_refuses_a_folder_that_is_not_a_run(tmp_path):
    with contextlib.redirect_stderr(err := io.StringIO()):
        assert main(["--rerun", str(tmp_path)]) == 2
    assert "is not a run folder" in err.getvalue()
    with contextlib.redirect_stderr(err := io.StringIO()):
        assert main(["--rerun", str(tmp_path), "--duration", "5"]) == 2
    assert "give it alone (with --baseline at most)" in err.getvalue()
