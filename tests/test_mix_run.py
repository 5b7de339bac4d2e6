"""`python -m comparison --mix 'NaiveRetryClient:1,AdaptiveClient:3'`: several classes in one run."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from comparison.config import ConfigError, RunConfig, build_plan, parse_mix
from tests.locust_run import ROOT, locust_command

MIX = (("NaiveRetryClient", 1), ("AdaptiveClient", 3))


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def mix_run(tmp_path_factory) -> tuple[str, Path]:
    results = tmp_path_factory.mktemp("results")
    result = subprocess.run(
        [
            sys.executable, "-m", "comparison", "--mix", "NaiveRetryClient:1,AdaptiveClient:3",
            "--workers", "2", "--duration", "6", "--capacity", "90", "--drain-s", "1",
            "--results-dir", str(results),
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout, (results / "latest").resolve()


@pytest.mark.slow
def test_one_run_holds_every_group_with_its_share_of_the_load(mix_run):
    out, run_dir = mix_run
    assert "class 1 of 1: mix of NaiveRetryClient x 1, AdaptiveClient x 3" in out
    record = json.loads((run_dir / "run.json").read_text())
    assert list(record["classes"]) == ["mix"]  # one Locust run
    log = (run_dir / "mix_locust.log").read_text()
    assert 'All users spawned: {"AdaptiveClient": 6, "NaiveRetryClient": 2} (8 total users)' in log
    summary = {row["client"]: row for row in rows(run_dir / "summary.csv")}
    assert list(summary) == ["NaiveRetryClient", "AdaptiveClient"]
    assert float(summary["NaiveRetryClient"]["offered_rps"]) == pytest.approx(45.0)
    assert float(summary["AdaptiveClient"]["offered_rps"]) == pytest.approx(135.0)
    assert summary["AdaptiveClient"]["workers"] == "2"
    launched = {client: int(row["launched"]) for client, row in summary.items()}
    assert 0.2 < launched["NaiveRetryClient"] / sum(launched.values()) < 0.3, launched
    for client, row in summary.items():
        assert row["amplification"] == ""  # Locust's stats rows are shared by the classes: not per class
        # Locust's dispatcher places fixed-count users where it likes: both of NaiveRetryClient's may
        # land on one worker, so a group runs as one or two instances
        assert row["workers"] in ("1", "2")
        parts = sum(int(row[name]) for name in ("ok", "server_errors", "shed", "unfinished"))
        assert int(row["launched"]) == parts > 0, client
    # one shared mitigations file, one `all` row per class per sample
    final = {}
    for row in rows(run_dir / "mix_mitigations.csv"):
        if row["worker"] == "all":
            final[row["client"]] = row
    assert {c: int(r["launched_total"]) for c, r in final.items()} == launched


@pytest.mark.slow
def test_the_groups_are_shown_side_by_side(mix_run):
    out, run_dir = mix_run
    summary = {row["client"]: row for row in rows(run_dir / "summary.csv")}
    goodput = {c: float(r["slo_goodput_rps"]) for c, r in summary.items()}
    total = sum(goodput.values())
    md = (run_dir / "summary.md").read_text()
    assert "## Mix: the groups side by side" in md
    for client, users, share in (("NaiveRetryClient", 1, "25%"), ("AdaptiveClient", 3, "75%")):
        sentence = rf"mix: {client} launched {share} of the load and got (\d+)% of the SLO goodput"
        said = re.search(sentence, out)
        assert said, out
        # the sentence and the table share their unrounded numbers; summary.csv's are rounded to 0.1/s,
        # so a share on a half percent may round the other way from them (40.8 / 85.9 = 47.497 %: "48%")
        assert abs(int(said[1]) - 100 * goodput[client] / total) <= 1, (said[1], goodput)
        columns = rf"\| {client} \| {users} \| {share} \|(?: [^|]+ \|){{3}} {said[1]}% \|"  # its 7th
        assert re.search(columns, md), md
    assert "Per share of the load, " in out
    assert 'id="mix"' in (run_dir / "report.html").read_text()


def test_mix_values_are_checked():
    assert parse_mix("A:1, B:3") == (("A", 1), ("B", 3))
    for text, message in (
        ("A:1", "name at least two classes"),
        ("A:1,A:2", "A is named twice"),
        ("A:0,B:1", "users must be from 1 to 100"),
        ("A:x,B:1", "'x' is not a whole number of users"),
        ("A,B:1", "is not CLASS:USERS"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse_mix(text)
    with pytest.raises(ConfigError, match="--mix: not with the burst scenario"):
        RunConfig(scenario="burst", clients=("A", "B"), mix=(("A", 1), ("B", 1)))
    plan = build_plan(RunConfig(clients=("A", "B"), mix=(("A", 1), ("B", 3)), workers=2), 90.0)
    assert (plan.users, plan.offered_rps) == (8, pytest.approx(180.0))
    assert plan.launch_rate == pytest.approx(22.5) and plan.mix_spec() == "A:2,B:6"
    assert plan.offered_share("B") == pytest.approx(0.75)


@pytest.mark.slow
def test_locust_refuses_a_mix_that_does_not_fit(tmp_path):
    result = subprocess.run(
        locust_command("--mix", "NaiveRetryClient:1,AdaptiveClient:3", "NaiveRetryClient", "AdaptiveClient",
                       seconds=1, host="http://127.0.0.1:9", users=3),
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "hammerlab: error: --mix: the counts add up to 4 users but -u is 3"
    )
