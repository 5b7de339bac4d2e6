"""The ramp scenario: its schedule climbs from 0.2 x C to 3 x C, the knee is the offered load where SLO
attainment first falls below 99 %, and a short real run writes the columns, the sentence and the chart."""

from __future__ import annotations

import csv
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest

from comparison.config import RunConfig, build_plan
from comparison.errors import ConfigError
from comparison.narrative import describe
from comparison.readers import ClientRow
from comparison.scenarios import scenario_of
from comparison.scenarios.ramp import KNEE_ATTAINMENT, climb, knee, windows
from comparison.summary import Summary

ROOT = Path(__file__).resolve().parent.parent
C = 90.0


def ramp_plan(duration: float = 30.0):
    return build_plan(RunConfig(scenario="ramp", clients=("HammerClient",), duration_s=duration), C)


def test_the_load_climbs_linearly_from_a_fifth_of_c_to_three_times_c():
    plan = ramp_plan()
    assert plan.offered_at(0) == pytest.approx(0.2 * C)
    assert plan.offered_at(29.99) == pytest.approx(3.0 * C)
    assert plan.offered_at(15) == pytest.approx(1.6 * C, abs=0.1 * C)  # halfway: (0.2 + 3) / 2
    assert plan.offered_rps == pytest.approx(1.6 * C, rel=0.02)
    levels = [plan.offered_at(t / 10) for t in range(300)]
    assert levels == sorted(levels)  # never falls
    assert max(b - a for a, b in pairwise(levels)) == pytest.approx(0.1 * C)
    steps = climb(30.0)
    assert steps[0] == (0.0, 2) and steps[-1][1] == 30 and steps[-1][0] < 30
    assert plan.split(2).offered_at(15) == pytest.approx(plan.offered_at(15))


def test_the_top_follows_the_rate_options_and_a_mix_is_refused():
    top = build_plan(RunConfig(scenario="ramp", rate_multiplier=2.0), C)
    assert top.offered_at(29.99) == pytest.approx(2.0 * C)
    assert top.offered_at(0) == pytest.approx(2.0 * C * 0.2 / 3.0)
    with pytest.raises(ConfigError, match="--mix: not with the ramp scenario"):
        RunConfig(scenario="ramp", clients=("A", "B"), mix=(("A", 1), ("B", 1)))


def rows_for(plan, attainment_at) -> list[ClientRow]:
    """Client rows every 0.25 s launching the plan's offered load, of which `attainment_at(offered)` were
    answered within the SLO (exact counts: the counters' rounding is not what is tested here)."""
    rows, launched, slo_ok, t = [], 0.0, 0.0, 0.0
    while t <= plan.duration_s + 1e-9:
        offered = plan.offered_at(t)
        rows.append(ClientRow(1000 + t, t, 0, 0, launched, 0, 0, 0, slo_ok_total=slo_ok))  # type: ignore[arg-type]
        launched += offered * 0.25
        slo_ok += offered * 0.25 * attainment_at(offered)
        t += 0.25
    return rows


def test_the_knee_is_the_offered_load_where_attainment_first_falls_below_99_percent():
    plan = ramp_plan()
    rows = rows_for(plan, lambda offered: 1.0 if offered < 1.5 * C else 0.6)
    found = knee(rows, plan)
    assert found is not None
    # a 2 s window reaches the first overloaded step while it still averages below it
    assert 1.3 * C <= found <= 1.6 * C
    every = windows(rows, plan)
    assert every[0].start_s == 1.0 and every[0].attainment == pytest.approx(1.0, abs=0.01)
    assert min(w.attainment for w in every) == pytest.approx(0.6, abs=0.01)


def test_a_small_dip_is_not_a_knee_but_one_percent_is():
    plan = ramp_plan()
    assert knee(rows_for(plan, lambda offered: 0.995), plan) is None
    assert knee(rows_for(plan, lambda offered: 0.985), plan) == pytest.approx(plan.offered_at(3.0), rel=0.2)
    assert knee([], plan) is None


def test_a_window_at_the_foot_widens_until_it_holds_enough_calls():
    plan = ramp_plan()
    rows = rows_for(plan, lambda offered: 1.0)
    first = windows(rows, plan)[0]  # 18 to 30 requests/s: a 2 s window holds about 50 calls
    assert first.offered_rps > plan.offered_at(2.0)  # so it reaches further up than 1 s to 3 s


def summary(client: str, knee_rps: float | None) -> Summary:
    base = Summary(client, "ramp", C, 144.0, 1000.0, 80.0, 0.5, 90.0, 4000, 3500, 500, "503=500", 0, "",
                   0, 0, None, None, None, None, 500, 20.0, 400.0, 900.0, 1000.0, 1200.0, 40, 300.0, 200.0,
                   80, 60,
                   None)  # fmt: skip
    return scenario_of("ramp").extra(base, knee_offered_rps=knee_rps, knee_x=knee_rps and knee_rps / C)


def test_the_row_gains_its_knee_and_the_narrative_ranks_the_classes():
    plan = ramp_plan()
    rows = [summary("HammerClient", 100.0), summary("AdaptiveClient", None)]
    rows.append(summary("ThrottledClient", 130.0))
    cells = rows[0].cells()
    assert list(cells)[-2:] == ["knee_offered_rps", "knee_x"]
    assert (cells["knee_offered_rps"], cells["knee_x"]) == ("100.0", "1.11")
    assert rows[1].cells()["knee_offered_rps"] == ""
    text = " ".join(describe(rows, plan))
    assert "a load climbing linearly from 18 to 270 requests/s (0.2 x to 3.0 x)" in text
    assert "AdaptiveClient never fell below 99 % up to the top of the ramp, the furthest of the 3" in text
    assert "ThrottledClient fell below 99 % at 130 requests/s (1.44 x C); HammerClient fell below" in text
    from comparison.gates import judge, parse_gate

    assert judge(parse_gate("knee_offered_rps >= 0.9*capacity_rps"), rows[0]).passed
    assert not judge(parse_gate("knee_offered_rps >= 0.9*capacity_rps"), rows[1]).passed  # no knee: no value


@pytest.mark.slow
def test_a_short_real_ramp_finds_the_knee_of_a_client_that_overloads_the_server(tmp_path):
    """6 s from 0.2 x to 3 x a C given as 60/s, against the real embedded target (~90/s here): the
    seed's client overloads it near the top, so its attainment falls and its knee is filled."""
    result = subprocess.run(
        [sys.executable, "-m", "comparison", "--scenario", "ramp", "--clients", "HammerClient",
         "--duration", "6", "--capacity", "60", "--slo-ms", "100", "--drain-s", "1",
         "--results-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir() and not p.is_symlink()]
    with (run / "summary.csv").open(newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["scenario"] == "ramp" and float(row["offered_rps"]) == pytest.approx(96.0, rel=0.02)
    intended = int(row["launched"]) + int(row["skipped"])
    assert intended == pytest.approx(96.0 * 6, rel=0.2)  # the schedule drove Locust's users
    assert row["knee_offered_rps"] and 12.0 <= float(row["knee_offered_rps"]) <= 180.0
    assert float(row["knee_x"]) == pytest.approx(float(row["knee_offered_rps"]) / 60, abs=0.01)
    assert "Climbing the ramp, HammerClient fell below 99 % at" in (run / "summary.md").read_text()
    page = (run / "report.html").read_text()
    assert 'id="ramp-goodput"' in page and "SLO goodput against offered load" in page
    assert KNEE_ATTAINMENT == 0.99
