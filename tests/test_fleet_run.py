"""`python -m comparison --scenario fleet`: per-instance shares, Jain's index, the limits chart, targets."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from comparison.fleet import jain

ROOT = Path(__file__).resolve().parent.parent
CLIENT = "AdaptiveClient"


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def fleet_run(tmp_path_factory) -> tuple[str, Path]:
    results = tmp_path_factory.mktemp("results")
    result = subprocess.run(
        [
            sys.executable, "-m", "comparison", "--scenario", "fleet", "--workers", "2", "--clients", CLIENT,
            "--duration", "6", "--capacity", "90", "--drain-s", "1", "--results-dir", str(results),
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout, (results / "latest").resolve()


@pytest.mark.slow
def test_fleet_reports_each_instance_its_share_and_jain(fleet_run):
    out, run_dir = fleet_run
    [summary] = rows(run_dir / "summary.csv")
    instances = [row for row in rows(run_dir / "fleet.csv") if row["client"] == CLIENT]
    assert [row["instance"] for row in instances] == ["instance 1", "instance 2"]
    assert summary["workers"] == "2"
    # the instances' own numbers add up to the class's, and each got a share of the goodput
    for column, name in (("launched", "launched"), ("ok", "ok"), ("shed", "shed")):
        assert sum(int(row[name]) for row in instances) == int(summary[column]), column
    goodputs = [float(row["slo_goodput_rps"]) for row in instances]
    assert sum(goodputs) == pytest.approx(float(summary["slo_goodput_rps"]), abs=0.06)
    assert sum(float(row["share"]) for row in instances) == pytest.approx(1.0, abs=0.002)
    assert all(float(row["median_limit"]) >= 1 for row in instances)  # an adaptive limit each
    index = jain(goodputs)
    assert index is not None and 0.5 <= index <= 1.0
    md = (run_dir / "summary.md").read_text()
    assert f"### {CLIENT} (2 instances, Jain's index {index:.3f})" in md
    for target in ("total SLO goodput", "Jain's fairness index", "server lag p95"):
        assert re.search(rf"\| {target} \| [^|]+ \| [^|]+ \| (PASS|MISS) \|", md), target
    assert re.search(rf"fleet {CLIENT}: total SLO goodput [\d.]+/s = [\d.]+ C \((PASS|MISS)\); Jain's", out)
    assert "<h2>Fleet: every client instance</h2>" in (run_dir / "report.html").read_text()
    assert '<div class="chart" id="fleet-limits"><svg' in (run_dir / "report.html").read_text()


@pytest.mark.slow
def test_the_fleets_limit_is_the_sum_of_the_instances(fleet_run):
    _, run_dir = fleet_run
    samples: dict[str, dict[str, str]] = defaultdict(dict)
    for row in rows(run_dir / f"{CLIENT}_mitigations.csv"):
        samples[row["timestamp"]][row["worker"]] = row["limit"]
    with_both = [s for s in samples.values() if len(s) == 3]
    # the workers also send their numbers every second, between Locust's 3 s reports
    assert len(with_both) >= 6, len(with_both)
    for sample in with_both:
        limits = [int(v) for k, v in sample.items() if k != "all"]
        assert int(sample["all"]) == sum(limits), sample
