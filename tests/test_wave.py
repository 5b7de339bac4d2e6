"""The wave scenario: a sine between 0.5 x C and 2 x C with the period of --period-s, each class's SLO
attainment on the crests and in the troughs, and a short real run."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from comparison.__main__ import parse_config
from comparison.config import ConfigError, RunConfig, build_plan
from comparison.narrative import describe
from comparison.readers import ClientRow
from comparison.scenarios import scenario_of
from comparison.scenarios.wave import WaveOptions, attainments, crests, swing
from comparison.summary import Summary

ROOT = Path(__file__).resolve().parent.parent
C = 80.0


def wave_plan(duration: float = 40.0, period: float = 20.0):
    config = RunConfig(scenario="wave", duration_s=duration, scenario_options=WaveOptions(period))
    return build_plan(config, C)


def test_the_load_swings_between_half_and_twice_c_with_the_given_period():
    plan = wave_plan()
    levels = [plan.offered_at(t / 4) for t in range(160)]
    assert min(levels) == pytest.approx(0.5 * C) and max(levels) == pytest.approx(2.0 * C)
    assert plan.offered_at(0) == pytest.approx(0.5 * C)  # it starts in a trough
    assert plan.offered_at(10) == pytest.approx(2.0 * C)  # the crest half a period later
    assert plan.offered_at(20) == pytest.approx(0.5 * C)
    assert plan.offered_at(15) == pytest.approx(1.25 * C, abs=0.1 * C)
    assert plan.offered_rps == pytest.approx(1.25 * C, rel=0.03)
    # above C once (1 - cos) / 2 passes 1/3: from 3.9 s to 16.1 s of each 20 s
    assert crests(plan)[0] == pytest.approx((3.92, 16.08), abs=0.4)
    short = wave_plan(duration=20, period=4)
    assert short.offered_at(2) == pytest.approx(2.0 * C) and short.offered_at(4) == pytest.approx(0.5 * C)
    assert swing(8, 4)[0] == (0.0, 5)


def test_the_period_is_an_option_of_the_wave_only():
    assert parse_config(["--scenario", "wave", "--period-s", "10"]).scenario_options == WaveOptions(10.0)
    assert parse_config(["--scenario", "wave"]).scenario_options == WaveOptions(20.0)
    with pytest.raises(ConfigError, match="--period-s: only for --scenario wave"):
        parse_config(["--scenario", "cliff", "--period-s", "10"])
    with pytest.raises(ConfigError, match=r"--period-s: must be from 2 to 300 seconds, got 1"):
        parse_config(["--scenario", "wave", "--period-s", "1"])
    with pytest.raises(ConfigError, match="too short for the wave scenario: one period"):
        parse_config(["--scenario", "wave", "--period-s", "40", "--duration", "30"])


def rows_for(plan, attainment_at, latency_s: float = 0.4, step: float = 0.05) -> list[ClientRow]:
    """Client rows every `step` s launching the plan's offered load; `attainment_at(offered)` of each
    launch is answered within the SLO, counted `latency_s` later (the ledger counts on arrival)."""
    rows, t = [], 0.0
    while t <= plan.duration_s + 1e-9:
        launched = sum(plan.offered_at(u * step) * step for u in range(round(t / step)))
        slo_ok = sum(
            plan.offered_at(u * step) * step * attainment_at(plan.offered_at(u * step))
            for u in range(round(t / step)) if u * step + latency_s <= t
        )  # fmt: skip
        rows.append(ClientRow(1000 + t, t, 0, 0, launched, 0, 0, 0, slo_ok_total=slo_ok))  # type: ignore[arg-type]
        t += step
    return rows


def test_attainment_is_split_by_whether_the_load_was_above_c_and_never_flatters():
    plan = wave_plan()
    truth = {True: 0.5, False: 1.0}
    crest, trough = attainments(rows_for(plan, lambda offered: truth[offered > C]), plan)
    # only answers counted from one SLO (1 s) after a phase began surely belong to it: a lower bound,
    # short by at most SLO / phase length (crests 12.2 s, troughs 7.8 s and 3.9 s)
    assert truth[True] * (1 - 1 / 12.2) - 0.02 <= crest <= truth[True]
    assert truth[False] * (1 - 1 / 3.9) - 0.02 <= trough <= truth[False]
    assert attainments([], plan) == (None, None)


def test_answers_that_arrive_in_the_next_phase_never_push_attainment_past_one():
    """A crest's late answers land in the trough: counted by arrival, the trough would read > 100 %."""
    plan = wave_plan()
    for latency in (0.1, 0.5, 0.99):
        crest, trough = attainments(rows_for(plan, lambda offered: 1.0, latency_s=latency), plan)
        assert 0.9 <= crest <= 1.0 and 0.7 <= trough <= 1.0


def summary(client: str, crest: float, trough: float) -> Summary:
    base = Summary(client, "wave", C, 100.0, 1000.0, 80.0, 0.8, 90.0, 4000, 3500, 500, "503=500", 0, "",
                   0, 0, None, None, None, None, 500, 20.0, 400.0, 900.0, 1000.0, 1200.0, 40, 300.0, 200.0,
                   80, 60,
                   None)  # fmt: skip
    return scenario_of("wave").extra(base, crest_slo_attainment=crest, trough_slo_attainment=trough)


def test_the_row_gains_both_attainments_and_the_narrative_compares_them():
    rows = [summary("HammerClient", 0.31, 0.9), summary("AdaptiveClient", 0.72, 0.99)]
    cells = rows[0].cells()
    assert list(cells)[-2:] == ["crest_slo_attainment", "trough_slo_attainment"]
    assert (cells["crest_slo_attainment"], cells["trough_slo_attainment"]) == ("0.310", "0.900")
    text = " ".join(describe(rows, wave_plan()))
    assert "a load swinging as a sine between 40 and 160 requests/s (0.5 x to 2.0 x" in text
    assert "Riding the wave, AdaptiveClient 72 % on the crests and 99 % in the troughs within the SLO" in text
    assert "The others: HammerClient 31 % on the crests and 90 % in the troughs." in text


@pytest.mark.slow
def test_a_short_real_wave_follows_the_schedule(tmp_path):
    """8 s, two periods of 4 s, a C given as 60/s, against the real embedded target: the row has both
    attainments and as many launches as the wave offered."""
    result = subprocess.run(
        [sys.executable, "-m", "comparison", "--scenario", "wave", "--period-s", "4", "--clients",
         "HammerClient", "--duration", "8", "--capacity", "60", "--drain-s", "1",
         "--results-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir() and not p.is_symlink()]
    with (run / "summary.csv").open(newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["scenario"] == "wave" and float(row["offered_rps"]) == pytest.approx(75.0, rel=0.05)
    intended = int(row["launched"]) + int(row["skipped"])
    assert intended == pytest.approx(75.0 * 8, rel=0.2)  # the schedule drove Locust's users
    assert 0 <= float(row["crest_slo_attainment"]) <= 1 and 0 <= float(row["trough_slo_attainment"]) <= 1
    assert "Riding the wave, HammerClient" in (run / "summary.md").read_text()
    assert "crest_slo_attainment" in (run / "report.html").read_text()
