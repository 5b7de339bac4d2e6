"""The metastable maths on hand-made samples: phase rates, recovery time, the stuck test, verdicts; the
options' refusals; the phase map's grid and tables."""

from __future__ import annotations

import pytest

from comparison.counters import rate_between
from comparison.metastable import (
    MetastableError,
    MetastableOptions,
    judge,
    windows,
)
from comparison.phase_map import Cell, markdown, read_grid, write_grid

START = 1000.0


def counter(rates: list[tuple[float, float]], step: float = 0.25, end: float = 50.0) -> list:
    """Cumulative samples every `step` s of a counter growing at `rate` from each (from_s, rate)."""
    points, total, t = [], 0.0, 0.0
    while t <= end + 1e-9:
        points.append((START + t, total))
        rate = next(r for since, r in reversed(rates) if t >= since)
        total += rate * step
        t = round(t + step, 6)
    return points


def test_rate_between_interpolates_and_knows_its_bounds():
    points = [(0.0, 0.0), (1.0, 10.0), (3.0, 50.0)]
    assert rate_between(points, 0.5, 2.0) == pytest.approx((30.0 - 5.0) / 1.5)
    assert rate_between(points, -1.0, 2.0) is None  # before the first sample
    assert rate_between(points, 2.0, 2.0) is None
    assert [round(r) for _, r in windows(points, 0.0, 3.0, width=1.0)][:1] == [10]


def test_a_client_that_comes_back_in_3_s_is_quick():
    # 80/s, then 0 during a 10 s trigger from 10 s, 0 for 3 s more, then 80/s again
    points = counter([(0, 80.0), (10, 0.0), (23, 80.0)])
    phases = judge(points, START, pre_s=10, trigger_s=10, after_s=30)
    assert phases.pre_rps == pytest.approx(80.0)
    assert phases.post_rps == pytest.approx(80.0)
    assert phases.recovered
    assert phases.recovery_s == pytest.approx(3.0, abs=0.15)
    assert phases.verdict == "quick"
    assert phases.peak_share == pytest.approx(1.0)


def test_a_late_recovery_is_slow():
    phases = judge(counter([(0, 80.0), (10, 0.0), (28, 80.0)]), START, 10, 10, 30)
    assert phases.recovered and phases.verdict == "slow"
    assert phases.recovery_s == pytest.approx(8.0, abs=0.15)


def test_a_client_held_under_a_fifth_is_stuck_and_its_best_window_says_so():
    phases = judge(counter([(0, 80.0), (10, 0.0), (20, 12.0)]), START, 10, 10, 30)
    assert not phases.recovered
    assert phases.recovery_s is None and phases.recovery_cell == "never"
    assert phases.verdict == "stuck"
    assert phases.peak_share == pytest.approx(12.0 / 80.0, abs=0.01)  # < 0.2: stuck the whole 30 s


def test_a_brief_spike_does_not_count_as_recovered():
    # one good second at 25 s, otherwise 20/s: the last 10 s decide
    phases = judge(counter([(0, 80.0), (10, 0.0), (20, 20.0), (25, 80.0), (26, 20.0)]), START, 10, 10, 30)
    assert not phases.recovered and phases.verdict == "stuck"
    assert phases.peak_share == pytest.approx(1.0, abs=0.01)


def test_the_warm_up_is_not_judged_and_no_pre_trigger_goodput_is_stuck():
    points = counter([(0, 0.0), (2, 80.0), (10, 0.0), (20, 80.0)])
    assert judge(points, START, 10, 10, 30).pre_rps == pytest.approx(80.0)
    assert judge(counter([(0, 0.0)]), START, 10, 10, 30).verdict == "stuck"


def test_no_trigger_judges_the_load_alone():
    phases = judge(counter([(0, 80.0)], end=20), START, pre_s=4, trigger_s=0, after_s=16)
    assert phases.recovered and phases.recovery_s == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"trigger_s": -1}, "--trigger-s: must be from 0 to 300 seconds, got -1"),
        ({"after_s": 2}, "--after-trigger-s: must be from 5 to 300 seconds, got 2"),
        ({"pre_s": 1}, "--pre-trigger-s: must be from 2 to 300 seconds, got 1"),
        ({"trigger_kind": "fast"}, "--trigger-kind: 'fast' is not one of capacity, slow"),
    ],
)
def test_bad_options_are_one_line(kwargs, message):
    with pytest.raises(MetastableError, match="^" + message.replace("(", r"\(")):
        MetastableOptions(**kwargs)


def test_the_target_queue_holds_1_2_s_of_work_and_the_checks_are_as_asked():
    args = MetastableOptions().target_args(90.0)
    assert args[:2] == ("--backlog", "68")
    assert "--no-skip-abandoned" in args and "--no-drop-expired" in args
    assert "--drop-expired" in MetastableOptions(drop_expired=True).target_args(90.0)
    assert MetastableOptions().duration_s == 50


def test_the_phase_map_grid_round_trips_and_tabulates(tmp_path):
    cells = [
        Cell("NaiveRetryClient", 0.9, 10.0, 81.0, 80.0, 3.0, False, None, 0.05, "stuck", 0.97),
        Cell("NaiveRetryClient", 0.6, 10.0, 54.0, 54.0, 54.0, True, 0.4, 1.0, "quick", 0.1),
        Cell("RetryClient", 0.9, 10.0, 81.0, 80.0, 79.0, True, 3.5, 1.0, "slow", 0.5),
    ]
    write_grid(cells, tmp_path / "grid.csv")
    rows = read_grid(tmp_path / "grid.csv")
    assert rows[0]["recovery_s"] == "never" and rows[0]["wasted_work_ratio"] == "0.970"
    table = markdown(rows)
    assert "**NaiveRetryClient**" in table and "**RetryClient**" in table
    assert "| 0.9 | stuck |" in table
    assert "| 0.6 | quick 0.4 s |" in table
    assert "| 0.9 | slow 3.5 s |" in table
