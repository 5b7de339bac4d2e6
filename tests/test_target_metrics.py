"""The target's /metrics follows Prometheus conventions, checked by a real validator on a live scrape:
`promtool check metrics` from Debian's `prometheus` package (`make test` installs it, never its daemon)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

PROMTOOL = "/usr/bin/promtool"


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    assert Path(PROMTOOL).exists(), "promtool is missing: `make promtool` installs it"
    return subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.mark.slow
def test_a_live_scrape_passes_promtool_and_the_histogram_counts_every_outcome(start_target):
    server = start_target(task_delay_ms=5, sync_work_ms=2, seed=3)
    for _ in range(4):
        assert requests.get(server.url + "/doWork", timeout=5).status_code == 200
    assert requests.get(server.url + "/doWork?expansion=x", timeout=5).status_code == 400
    server.admin("POST", "/faults", {"kind": "error", "duration_s": 30})
    assert requests.get(server.url + "/doWork", timeout=5).status_code == 500
    server.admin("POST", "/config", {"sync_work_ms": 60, "duration_s": 30})
    assert requests.get(server.url + "/doWork", timeout=5).status_code == 500
    text = requests.get(server.url + "/metrics", timeout=5).text

    checked = promtool_check(text)
    assert checked.returncode == 0 and checked.stdout + checked.stderr == "", checked.stdout + checked.stderr

    found = samples(text)
    stats = server.stats()

    def count(outcome: str) -> float:
        return found[("target_request_duration_seconds_count", (("outcome", outcome),))]

    assert (count("completed"), count("bad_request"), count("error")) == (4, 1, 2)
    assert count("completed") == stats["completed_total"] and count("error") == stats["errors_total"]
    # base units: 5 ms wait + 2 ms work each, so the four took 28 ms or more in seconds (not in ms)
    completed_sum = found[("target_request_duration_seconds_sum", (("outcome", "completed"),))]
    assert 0.028 <= completed_sum < 0.5
    below_5ms = found[("target_request_duration_seconds_bucket", (("le", "0.005"), ("outcome", "completed")))]
    assert below_5ms == 0
    assert found[("target_sync_work_seconds", ())] == 0.06
    assert found[("target_event_loop_lag_seconds", ())] < 1
    assert found[("target_requests_total", ())] == stats["requests_total"] == 7

    server.admin("POST", "/reset")
    after = samples(requests.get(server.url + "/metrics", timeout=5).text)
    assert after[("target_request_duration_seconds_count", (("outcome", "completed"),))] == 0


def test_promtool_rejects_the_old_names():
    """The validator is real: the names this module used to export fail it."""
    checked = promtool_check("# HELP target_lag_ms Lag\n# TYPE target_lag_ms gauge\ntarget_lag_ms 3\n")
    assert checked.returncode != 0 and "abbreviated units" in checked.stdout + checked.stderr
