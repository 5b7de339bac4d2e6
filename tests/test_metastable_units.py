"""The metastable maths on hand-made samples: phase rates, recovery time, the stuck test, verdicts; the
options' refusals; the phase map's grid and tables."""

from __future__ import annotations

import pytest

from comparison.counters import rate_between
from comparison.metastable import (
    NOT_BACK,
    RULE,
    STUCK_AFTER_S,
    SUSTAIN_S,
    VERDICTS,
    MetastableError,
    MetastableOptions,
    is_stuck,
    judge,
    sustained_recovery,
    verdict_for,
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


def test_a_spike_then_6_percent_is_not_quick():
    # The series: 1.2 s at the old level right after the trigger, 17 s at 6 %, then back. The old
    # rule took the spike's first window: quick, 0 s. Back means sustained: from 18.2 s, slow.
    phases = judge(counter([(0, 80.0), (10, 0.0), (20, 80.0), (21.2, 4.8), (38.2, 80.0)]), START, 10, 10, 30)
    assert phases.verdict == "slow"
    assert phases.recovery_s == pytest.approx(18.2, abs=0.15)
    assert phases.peak_share == pytest.approx(1.0, abs=0.01)  # shown, never judged
    # The same spike with no return is stuck after a 30 s after-phase
    phases = judge(counter([(0, 80.0), (10, 0.0), (20, 80.0), (21.2, 4.8)]), START, 10, 10, 30)
    assert phases.recovery_s is None and phases.verdict == "stuck"


def test_a_sustained_stretch_undone_by_a_relapse_does_not_count():
    # back for 6 s at 2 s, down for 12 s, back for good from 26 s: recovery is the last stretch
    points = counter([(0, 80.0), (10, 0.0), (22, 80.0), (28, 0.0), (40, 80.0)])
    phases = judge(points, START, 10, 10, 30)
    assert phases.recovery_s == pytest.approx(20.0, abs=0.15)
    assert phases.verdict == "slow"


def test_back_must_still_be_there_at_the_end():
    # back at once for 26 s, then down for the last 4 s (shorter than a relapse): not back at the end
    phases = judge(counter([(0, 80.0), (10, 0.0), (20, 80.0), (46, 0.0)]), START, 10, 10, 30)
    assert phases.recovery_s is None and phases.verdict == NOT_BACK  # the last 10 s at 60 %


def test_samples_that_stop_short_are_judged_up_to_the_last_one():
    # Locust stopped 2.5 s before the planned end (seen on a busy machine): back, waited 9.5 s
    phases = judge(counter([(0, 80.0), (3, 80.0)], end=12.5), START, pre_s=3, trigger_s=0, after_s=12)
    assert phases.verdict == "quick" and phases.post_rps == pytest.approx(80.0)
    assert phases.waited_s == pytest.approx(9.5)


def test_a_stretch_shorter_than_the_sustain_is_not_back():
    # 4.5 s at the old level, a second down, then at it again to the end: recovery starts at the second
    points = counter([(0, 80.0), (10, 0.0), (20, 80.0), (24.5, 0.0), (25.5, 80.0)])
    assert judge(points, START, 10, 10, 30).recovery_s == pytest.approx(5.5, abs=0.15)


def test_a_slow_drain_is_slow_not_stuck():
    # Goodput climbs back over 12 s after the trigger (a queue draining at C - offered), then holds
    rates = [(0, 80.0), (10, 0.0)] + [(20 + i, 80.0 * i / 12) for i in range(13)]
    phases = judge(counter(rates), START, 10, 10, 30)
    assert phases.verdict == "slow"
    assert 10.0 <= phases.recovery_s <= 12.0


def test_a_short_after_phase_cannot_call_stuck():
    # Down at 6 % to the end of a 12 s after-phase: not back after 12 s, not stuck
    points = counter([(0, 80.0), (10, 0.0), (20, 4.8)], end=32)
    phases = judge(points, START, 10, 10, 12)
    assert phases.verdict == NOT_BACK and phases.waited_s == pytest.approx(12.0)
    # Given 30 s, the same level is stuck; at 50 % it is neither back nor stuck
    assert judge(counter([(0, 80.0), (10, 0.0), (20, 4.8)]), START, 10, 10, 30).verdict == "stuck"
    assert judge(counter([(0, 80.0), (10, 0.0), (20, 40.0)]), START, 10, 10, 30).verdict == NOT_BACK


def test_the_rules_as_functions():
    after = [(round(0.1 * i, 1), 90.0 if i >= 20 else 10.0) for i in range(100)]
    assert sustained_recovery(after, 81.0) == pytest.approx(2.0)
    assert sustained_recovery(after[:59], 81.0) is None  # windows from 2.0 s to 5.8 s: 4.8 s, too short
    assert is_stuck(80.0, 10.0, waited_s=30.0, asked_after_s=30.0)
    assert not is_stuck(80.0, 10.0, waited_s=12.0, asked_after_s=12.0)
    assert not is_stuck(80.0, 16.0, waited_s=30.0, asked_after_s=30.0)  # 20 % is not under the share
    assert [verdict_for(1.0, False, 2.0), verdict_for(3.0, False, 2.0)] == ["quick", "slow"]
    assert [verdict_for(None, True, 2.0), verdict_for(None, False, 2.0)] == ["stuck", NOT_BACK]
    assert set(VERDICTS) == {"quick", "slow", NOT_BACK, "stuck"}
    assert f"{SUSTAIN_S:g} s" in RULE and f"{STUCK_AFTER_S:g} s" in RULE


def test_a_client_held_under_a_fifth_is_stuck():
    phases = judge(counter([(0, 80.0), (10, 0.0), (20, 12.0)]), START, 10, 10, 30)
    assert not phases.recovered
    assert phases.recovery_s is None and phases.recovery_cell == "never"
    assert phases.verdict == "stuck"
    assert phases.peak_share == pytest.approx(12.0 / 80.0, abs=0.01)


def test_a_brief_spike_does_not_count_as_recovered():
    # one good second at 25 s, otherwise 20/s (a quarter): not back, and above the stuck share
    phases = judge(counter([(0, 80.0), (10, 0.0), (20, 20.0), (25, 80.0), (26, 20.0)]), START, 10, 10, 30)
    assert not phases.recovered and phases.verdict == NOT_BACK
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
        ({"after_s": 5}, "--after-trigger-s: must be from 6 to 300 seconds, got 5"),
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
        Cell("RetryClient", 0.9, 10.0, 81.0, 80.0, 79.0, True, 3.5, 1.0, "slow", 0.5, 12.0),
        Cell("RetryClient", 1.0, 10.0, 90.0, 80.0, 30.0, False, None, 0.6, NOT_BACK, 0.6, 11.8),
    ]
    write_grid(cells, tmp_path / "grid.csv")
    rows = read_grid(tmp_path / "grid.csv")
    assert rows[0]["recovery_s"] == "never" and rows[0]["wasted_work_ratio"] == "0.970"
    table = markdown(rows)
    assert "**NaiveRetryClient**" in table and "**RetryClient**" in table
    assert "| 0.9 | stuck |" in table
    assert "| 0.6 | quick 0.4 s |" in table
    assert "| 0.9 | slow 3.5 s |" in table
    assert "| 1 | not back after 12 s |" in table  # the time it waited, never "stuck"
