"""The Mitigations tab's trends: a ring per client and worker of the limit, in flight, SLO goodput/s and
shed/s, bounded to the last 30 s of the samples' own clock, and its JSON with the Target server tab's
sparklines. The clock is injected: the snapshots' `at` and the board's sample times."""

from __future__ import annotations

import pytest

from locust_plugin.client_stats import ClientSnapshot
from locust_plugin.limit_series import LimitSeries, SeriesWindow
from locust_plugin.mitigation_rows import MitigationRow
from locust_plugin.mitigations_board import MitigationsBoard
from locust_plugin.web_series import series_json
from locust_plugin.web_tables import SPARK
from mitigations.csv_schema import ALL_WORKERS

START = 1_000.0


def snap(at: float, limit: int, slo_ok: int, shed: int, in_flight: int) -> ClientSnapshot:
    return ClientSnapshot(
        client="AdaptiveClient",
        at=at,
        started_at=START,
        launched=slo_ok + shed,
        slo_ok=slo_ok,
        shed_by_cause={"adaptive": shed} if shed else {},
        limit=limit,
        throttle_in_flight=in_flight,
        concurrent=in_flight + 5,  # calls queued at the limiter too: not what the limit caps
    )


def run_board(seconds: float, step: float = 0.5) -> MitigationsBoard:
    """Two workers reporting every `step` s: w1 at 40 ok/s and 10 shed/s with its limit climbing by one
    a second, w2 at 20 ok/s with a limit of 8, each a quarter step behind the master's clock."""
    board = MitigationsBoard()
    board.begin_test()
    t = 0.0
    while t < seconds:
        t = round(t + step, 3)
        at = START + t - step / 4
        board.update("w1", 1, [snap(at, 4 + int(t), round(40 * t), round(10 * t), 3)])
        board.update("w2", 1, [snap(at, 8, round(20 * t), 0, 6)])
        board.rows(START + t, t)
    return board


def test_each_client_and_worker_keeps_the_last_30_s_of_its_own_numbers():
    board = run_board(45.0)
    series = board.series.series()
    assert set(series) == {("AdaptiveClient", w) for w in ("w1", "w2", ALL_WORKERS)}
    for points in series.values():
        assert points[-1].at == START + 45.0
        assert points[0].at >= START + 45.0 - 30.0  # bounded by the samples' clock, not by a count
        assert len(points) == 61  # 30 s at two samples a second, both ends in
    w1, w2, total = (series[("AdaptiveClient", w)][-1] for w in ("w1", "w2", ALL_WORKERS))
    assert (w1.limit, w2.limit, total.limit) == (49, 8, 57)
    assert (w1.in_flight, w2.in_flight, total.in_flight) == (3, 6, 9)  # the limiter's, not `concurrent`
    assert w1.goodput_per_s == pytest.approx(40.0) and w2.goodput_per_s == pytest.approx(20.0)
    assert total.goodput_per_s == pytest.approx(60.0)
    assert (w1.shed_per_s, w2.shed_per_s, total.shed_per_s) == (pytest.approx(10.0), 0.0, pytest.approx(10.0))
    climbing = [p.limit for p in series[("AdaptiveClient", "w1")]]
    assert climbing == sorted(climbing) and climbing[0] == 4 + 15


def test_a_new_test_starts_empty_and_a_silent_series_fades_out():
    board = run_board(5.0)
    board.begin_test()
    assert board.series.series() == {}
    ring = LimitSeries(SeriesWindow(window_s=30.0))
    ring.add([MitigationRow(START, 0.0, "w1", "C", limit=3), MitigationRow(START, 0.0, "w2", "C")])
    ring.add([MitigationRow(START + 20, 20.0, "w1", "C", limit=4)])
    assert set(ring.series()) == {("C", "w1"), ("C", "w2")}
    ring.add([MitigationRow(START + 31, 31.0, "w1", "C", limit=5)])
    assert set(ring.series()) == {("C", "w1")}  # w2 said nothing for 31 s: gone
    assert [p.limit for p in ring.series()[("C", "w1")]] == [4, 5]


def test_the_ring_is_bounded_by_count_too():
    ring = LimitSeries(SeriesWindow(window_s=30.0, max_points=10))
    for i in range(100):
        ring.add([MitigationRow(START + i * 0.01, i * 0.01, "local", "C", concurrent=i)])
    assert [p.in_flight for p in ring.series()[("C", "local")]] == list(range(90, 100))


def test_in_flight_without_a_throttle_leaves_out_the_calls_queued_at_a_limiter():
    ring = LimitSeries()
    ring.add([MitigationRow(START, 0.0, "local", "AdaptiveQueued", concurrent=30, queue_depth=12, limit=18)])
    assert ring.series()[("AdaptiveQueued", "local")][0].in_flight == 18


@pytest.mark.parametrize(("window", "points"), [(0.0, 10), (-1.0, 10), (4000.0, 10), (30.0, 1)])
def test_a_window_out_of_range_is_refused(window, points):
    with pytest.raises(ValueError, match="must be from"):
        SeriesWindow(window_s=window, max_points=points)


def test_the_json_has_a_sparkline_now_low_and_high_per_metric_in_the_tables_order():
    data = series_json(run_board(40.0).series)
    assert data["window_s"] == 30.0
    assert [m["key"] for m in data["metrics"]] == ["limit", "in_flight", "goodput", "shed"]
    assert [(r["client"], r["worker"]) for r in data["rows"]] == [
        ("AdaptiveClient", "w1"),
        ("AdaptiveClient", "w2"),
        ("AdaptiveClient", ALL_WORKERS),
    ]
    w1 = data["rows"][0]
    assert w1["span_s"] == 30.0 and w1["samples"] == 61
    assert (w1["limit"]["now"], w1["limit"]["low"], w1["limit"]["high"]) == ("44", "14", "44")
    assert w1["limit"]["trend"][0] == SPARK[0] and w1["limit"]["trend"][-1] == SPARK[-1]
    assert 1 < len(w1["limit"]["trend"]) <= 30
    assert w1["goodput"]["now"] == "40.0" and w1["shed"]["now"] == "10.0"
    assert len(w1["in_flight"]["values"]) == 61


def test_one_process_shows_no_all_row_and_a_client_without_a_limit_says_so():
    ring = LimitSeries()
    for i in range(3):
        ring.add(
            [
                MitigationRow(START + i, i, "local", "HammerClient", concurrent=i),
                MitigationRow(START + i, i, ALL_WORKERS, "HammerClient", concurrent=i),
            ]
        )
    [row] = series_json(ring)["rows"]
    assert row["worker"] == "local"
    assert row["limit"] == {"now": "-", "low": "", "high": "", "trend": "", "values": []}
    assert row["in_flight"]["now"] == "2" and row["in_flight"]["trend"] == SPARK[0] + SPARK[4] + SPARK[7]
