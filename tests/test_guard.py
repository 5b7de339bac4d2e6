"""Guard rails (issue 11, item 4): loopback-only targets unless opted in, and the --abort-on stop-loss.

The off-loopback cases run for real in a private network namespace (tests/netns_guard.py, FIELD-NOTES
§6), where 10.200.0.1 is a second address on `lo`: nothing can leave the machine even if the guard
broke. The stop-loss runs real Locust and a real comparison against a target that fails every request.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mitigations.guard import (
    DEFAULT_REMOTE_ABORT_ON,
    StopLoss,
    is_local_url,
    parse_condition,
    parse_conditions,
    remote_problem,
)
from tests.locust_run import ROOT, locust_command
from tests.test_web_ui_guard import NETNS

# -- the rules on their own --------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_opt_in_from_the_environment(monkeypatch):
    monkeypatch.delenv("HAMMERLAB_ALLOW_REMOTE", raising=False)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:3000", "http://127.9.9.9", "http://[::1]:80", "http://localhost"]
)
def test_loopback_hosts_pass(url):
    assert remote_problem(url) is None
    assert is_local_url(url)


@pytest.mark.parametrize("url", ["http://10.200.0.1:8080", "http://[::ffff:10.0.0.1]", "http://0.0.0.0:80"])
def test_other_addresses_are_refused_with_one_line_naming_the_host_and_the_opt_in(url):
    problem = remote_problem(url)
    assert problem is not None and "\n" not in problem
    assert url in problem and "--allow-remote" in problem and "HAMMERLAB_ALLOW_REMOTE=1" in problem
    assert remote_problem(url, allow_remote=True) is None
    assert not is_local_url(url)


def test_the_environment_opts_in(monkeypatch):
    monkeypatch.setenv("HAMMERLAB_ALLOW_REMOTE", "1")
    assert remote_problem("http://10.200.0.1:8080") is None
    monkeypatch.setenv("HAMMERLAB_ALLOW_REMOTE", "0")
    assert remote_problem("http://10.200.0.1:8080") is not None


@pytest.mark.parametrize(
    ("text", "metric", "threshold", "hold"),
    [("server_error_rate>20% for 5s", "server_error_rate", 20, 5), ("p99>5s for 10s", "p99", 5000, 10),
     ("p99 >= 800ms for 2.5s", "p99", 800, 2.5), ("server_lag_ms>1000 for 5s", "server_lag_ms", 1000, 5)],
)  # fmt: skip
def test_conditions_parse(text, metric, threshold, hold):
    condition = parse_condition(text)
    assert (condition.metric, condition.threshold, condition.hold_s) == (metric, threshold, hold)


@pytest.mark.parametrize(
    ("text", "named"),
    [("cpu>20% for 5s", "'cpu'"), ("p99>5 for 5s", "unit"), ("server_error_rate>120% for 5s", "99.99"),
     ("server_error_rate>20%", "not a condition"), ("p99>5s for 0.1s", "duration"), ("", "not a condition")],
)  # fmt: skip
def test_bad_conditions_are_one_line(text, named):
    with pytest.raises(ValueError) as error:
        parse_condition(text)
    assert named in str(error.value) and "\n" not in str(error.value)


def test_defaults_apply_to_a_remote_target_only_and_none_turns_them_off():
    assert parse_conditions([], remote=False) == ()
    assert [c.text for c in parse_conditions([], remote=True)] == list(DEFAULT_REMOTE_ABORT_ON)
    assert parse_conditions(["none"], remote=True) == ()
    assert [c.text for c in parse_conditions(["p99>1s for 1s"], remote=True)] == ["p99>1s for 1s"]


def test_a_condition_trips_only_after_holding_for_its_whole_duration():
    loss = StopLoss([parse_condition("server_error_rate>20% for 5s")])
    assert loss.feed(0.0, {"server_error_rate": 50.0}) is None
    assert loss.feed(4.9, {"server_error_rate": 50.0}) is None
    assert loss.feed(5.0, {"server_error_rate": 10.0}) is None  # broke the hold
    assert loss.feed(6.0, {"server_error_rate": 30.0}) is None
    assert loss.feed(8.0, {"server_error_rate": None}) is None  # no answers: neither starts nor breaks
    tripped = loss.feed(11.0, {"server_error_rate": 40.0})
    assert tripped is not None and tripped[1] == 40.0
    assert "server_error_rate>20% for 5s" in loss.message() and "exit code 3" in loss.message()


# -- real processes -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_plain_locust_run_stops_itself_on_a_stop_loss(start_target, tmp_path):
    target = start_target(fault=["error:rate=1"])
    started = time.monotonic()
    result = subprocess.run(
        locust_command("--launch-rate", "20", "--drain-s", "1", "--abort-on", "server_error_rate>20% for 1s",
                       "HammerClient", seconds=30, host=target.url),
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr[-2000:]
    assert time.monotonic() - started < 15  # not the 30 s run time
    said = [line for line in result.stderr.splitlines() if "stop-loss:" in line]
    assert len(said) == 1 and "server_error_rate>20% for 1s held (last 100%)" in said[0]


@pytest.mark.slow
def test_the_comparison_stops_the_whole_run_on_a_stop_loss(start_target, tmp_path):
    target = start_target()

    def fail_everything_once_the_first_class_runs() -> None:
        # the comparison clears a Hammerlab target's faults before each class: inject after that
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob("healthy-*/HammerClient_locust.log")) and time.monotonic() < deadline:
            time.sleep(0.1)
        status, _ = target.admin("POST", "/faults", {"kind": "error", "rate": 1})
        assert status == 201

    injector = threading.Thread(target=fail_everything_once_the_first_class_runs, daemon=True)
    injector.start()
    result = subprocess.run(
        [sys.executable, "-m", "comparison", "--host", target.url, "--capacity", "20", "--duration", "20",
         "--scenario", "healthy", "--drain-s", "0", "--clients", "HammerClient,ThrottledClient",
         "--abort-on", "server_error_rate>20% for 1s", "--results-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    injector.join(timeout=5)
    assert result.returncode == 3, result.stdout[-2000:] + result.stderr[-2000:]
    assert "comparison: HammerClient: stop-loss: server_error_rate>20% for 1s held" in result.stdout
    run = next(tmp_path.glob("healthy-*"))
    assert (run / "HammerClient_stats.csv").exists()
    assert not (run / "ThrottledClient_stats.csv").exists()  # the run stopped: the next class never ran
    assert "stop-loss: server_error_rate>20% for 1s" in (run / "summary.md").read_text()
    record = json.loads((run / "run.json").read_text())
    assert "stop-loss" in record["classes"]["HammerClient"]["stop_loss"]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_off_loopback_hosts_are_refused_before_any_socket_and_reached_when_opted_in():
    result = subprocess.run(
        [*NETNS, sys.executable, str(Path(__file__).with_name("netns_guard.py"))],
        cwd=ROOT, capture_output=True, text=True, timeout=150,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    for name, prefix in (
        ("locust_refused", "hammerlab: error: "),
        ("comparison_refused", "python -m comparison"),
    ):
        run = got[name]
        assert run["rc"] == 2 and len(run["lines"]) == 1, run
        assert run["lines"][0].startswith(prefix)
        assert "10.200.0.1" in run["lines"][0] and "--allow-remote" in run["lines"][0]
    assert got["accepted_after_refusals"] == 0  # not one connection, not even a reachability check
    assert got["comparison_opted_in"]["rc"] == 0, got["comparison_opted_in"]
    assert got["reached_by_comparison"] >= 20  # the check, the 5 s at 8/s
    opted = got["locust_opted_in_by_env"]
    assert got["reached_by_locust"] > 0
    # a remote target gets the default stop-loss: every answer a 500, so it stops after about 5 s
    assert opted["rc"] == 3 and "stop-loss: server_error_rate>20% for 5s held" in opted["lines"][-1], opted
    assert opted["seconds"] < 20
    for name in ("metrics_refused", "metrics_refused_by_comparison"):
        run = got[name]
        assert run["rc"] == 2 and len(run["lines"]) == 1, run
        line = run["lines"][0]
        assert "--server-metrics" in line and "http://10.200.0.1:" in line and "--allow-remote" in line
    assert got["metrics_accepted_after_refusals"] == 0
    assert got["metrics_opted_in"]["rc"] == 0, got["metrics_opted_in"]
    assert got["metrics_scraped"] >= 2  # every 250 ms while the 2 s test ran


def test_a_workers_allow_remote_stays_its_own_whatever_its_master_sends():
    """Locust's worker copies its master's custom options over its own on every spawn (runners.py):
    `own_opt_in.pin` keeps the opt-in the process started with."""
    import argparse

    from locust_plugin.own_opt_in import pin

    for own, sent in ((False, True), (True, False)):
        options = argparse.Namespace(allow_remote=own, launch_rate=1.0)
        pin(options)
        master = argparse.Namespace(allow_remote=sent, launch_rate=5.0)
        pin(master)  # the master pinned its own, too: nothing of it may travel in vars()
        vars(options).update(vars(master))  # what WorkerRunner does with a spawn's parsed_options
        options.allow_remote = sent
        assert options.allow_remote is own
        assert options.launch_rate == 5.0  # the run's other options are shared, as Locust means them
