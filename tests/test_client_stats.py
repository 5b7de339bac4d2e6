"""Mitigation numbers: counted from the reporter's events, read from real policies, summed per worker."""

from __future__ import annotations

import json
from types import SimpleNamespace

import gevent
import pytest
from locust.event import Events

from locust_plugin.client_rates import rate_baseline
from locust_plugin.client_stats import ClientSnapshot, ClientStatsCollector, OutcomeCounts
from locust_plugin.mitigation_rows import breaker_summary, join_counts
from locust_plugin.mitigations_board import MitigationsBoard
from locust_plugin.pipelines import BuiltPipeline
from locust_plugin.runtime import ClientRuntime
from mitigations.breaker import CircuitBreaker, CircuitBreakerConfig
from mitigations.core import BasePolicy, Call, FakeClock, Outcome, Pipeline, ReadTimeout
from mitigations.csv_schema import ALL_WORKERS, MITIGATION_COLUMNS
from mitigations.socket_pool import SocketPool, SocketPoolConfig
from mitigations.throttle import Throttle, ThrottleConfig
from tests.policy_kit import HeldCalls, SteppedClock


class Scripted:
    """A transport that answers each call with the next scripted error (None: 200), at once."""

    def __init__(self, clock: FakeClock, errors: list) -> None:
        self.clock = clock
        self.errors = list(errors)

    def send(self, call: Call) -> Outcome:
        error = self.errors.pop(0)
        return Outcome(call=call, finished_at=self.clock.now(), status=None if error else 200, error=error)


def runtime_with(name: str, policies: dict, transport, clock, events: Events) -> ClientRuntime:
    pipeline = Pipeline(list(policies.values()), transport, clock=clock)
    return ClientRuntime(name, BuiltPipeline(pipeline, policies), events)


def test_outcome_kinds_land_in_the_right_counters():
    counts = OutcomeCounts()
    for kind in ("ok", "ok", "503", "read-timeout", "connect-timeout", "deadline", "reset", "4xx"):
        counts.add(kind)
    for kind in ("shed:throttle", "shed:throttle", "shed:circuit-open", "shed:deadline", "unfinished"):
        counts.add(kind)  # calls that never reached the wire: the ledger counts them, not the wire counters
    assert counts.wire == 8
    assert counts.wire_failures == 6
    assert counts.timeouts == 3  # read-timeout, connect-timeout and a deadline on the wire
    assert counts.failures_by_kind == {
        "503": 1,
        "read-timeout": 1,
        "connect-timeout": 1,
        "deadline": 1,
        "reset": 1,
        "4xx": 1,
    }


def test_collector_counts_what_the_reporter_fires_and_reads_the_breaker():
    clock = FakeClock()
    events = Events()
    collector = ClientStatsCollector(wall=lambda: 5000.0 + clock.now())
    events.request.add_listener(collector.on_request)
    collector.reset()
    breaker = CircuitBreaker(CircuitBreakerConfig(mode="recent-error", recent_error_delay=2.0))
    throttle = Throttle(ThrottleConfig(max_concurrent=4))
    transport = Scripted(clock, [None, ReadTimeout(), None])
    runtime = runtime_with(
        "BreakerClient", {"breaker": breaker, "throttle": throttle}, transport, clock, events
    )
    events.request.fire(
        request_type="GET", name="/other", response_time=1, response_length=0, exception=None, context={}
    )  # some other user's request: not ours

    runtime.send(Call("GET", "/doWork", launched_at=clock.now()))  # ok
    runtime.send(Call("GET", "/doWork", launched_at=clock.now()))  # read timeout: breaker opens
    runtime.send(Call("GET", "/doWork", launched_at=clock.now()))  # shed: circuit open
    clock.advance(2.5)
    runtime.send(Call("GET", "/doWork", launched_at=clock.now()))  # closed again: ok

    [snap] = collector.snapshot({"BreakerClient": runtime})
    assert (snap.launched, snap.completed, snap.concurrent) == (4, 4, 0)
    assert (snap.wire, snap.wire_failures, snap.timeouts) == (3, 1, 1)
    assert snap.failures_by_kind == {"read-timeout": 1}
    assert snap.shed_by_cause == {"circuit-open": 1}
    assert snap.breaker_state == "closed"
    assert snap.breaker_transitions == 2
    assert [(old, new) for _, old, new in snap.recent_transitions] == [("closed", "open"), ("open", "closed")]
    opened_at = snap.recent_transitions[0][0]
    assert opened_at == pytest.approx(5000.0 + 1000.0)  # wall clock, not the breaker's monotonic one
    assert (snap.throttle_in_flight, snap.queue_depth) == (0, 0)
    assert snap.pool_in_use is None and snap.limit is None


def test_gauges_while_calls_are_held_on_the_wire():
    clock = SteppedClock()
    events = Events()
    collector = ClientStatsCollector()
    events.request.add_listener(collector.on_request)
    held = HeldCalls(clock)
    policies = {
        "throttle": Throttle(ThrottleConfig(max_concurrent=2)),
        "pooled": SocketPool(SocketPoolConfig(max_sockets=1)),
    }
    runtime = runtime_with("CombinedClient", policies, SimpleNamespace(send=held), clock, events)
    calls = [gevent.spawn(runtime.send, Call("GET", "/doWork", launched_at=clock.now())) for _ in range(3)]
    gevent.idle()

    [snap] = collector.snapshot({"CombinedClient": runtime})
    assert snap.concurrent == 2  # the third was shed at once by the throttle
    assert (snap.throttle_in_flight, snap.pool_in_use, snap.pool_waiting) == (2, 1, 1)
    assert snap.shed_by_cause == {"throttle": 1}
    held.release(2)
    gevent.joinall(calls, timeout=5)
    [done] = collector.snapshot({"CombinedClient": runtime})
    assert (done.concurrent, done.throttle_in_flight, done.pool_in_use, done.pool_waiting) == (0, 0, 0, 0)
    assert done.wire == 2 and done.max_concurrent == 3


class Marker(BasePolicy):
    """A policy the stats code has never heard of, with gauges of its own."""

    name = "marker"

    def __init__(self, gauges: dict) -> None:
        super().__init__()
        self.shown = gauges

    def execute(self, call: Call, proceed):
        return proceed(call)

    def gauges(self, wall_now: float) -> dict:
        return dict(self.shown)


def test_the_collector_asks_each_policy_for_its_gauges_and_knows_no_type():
    clock = SteppedClock()
    events = Events()
    collector = ClientStatsCollector()
    held = HeldCalls(clock)
    policies = {
        "marker": Marker({"limit": 9, "queue_depth": 5, "breaker_state": "open"}),
        "throttle": Throttle(ThrottleConfig(max_concurrent=1, mode="queue")),
        "late": Marker({"breaker_state": "closed"}),
    }
    runtime = runtime_with("AskedClient", policies, SimpleNamespace(send=held), clock, events)
    calls = [gevent.spawn(runtime.send, Call("GET", "/doWork", launched_at=clock.now())) for _ in range(3)]
    gevent.idle()

    [snap] = collector.snapshot({"AskedClient": runtime})
    assert snap.limit == 9 and snap.throttle_in_flight == 1
    assert snap.queue_depth == 5 + 2  # the same gauge from two policies: numbers add up
    assert snap.breaker_state == "open"  # anything else: the outermost policy's value
    assert snap.pool_in_use is None  # no policy reports it: an empty cell
    held.release(3)
    gevent.joinall(calls, timeout=5)


def test_snapshots_survive_the_trip_to_the_master():
    snap = ClientSnapshot(
        client="ThrottledClient",
        at=10.5,
        started_at=9.0,
        launched=7,
        shed_by_cause={"throttle": 2},
        breaker_state="open",
        breaker_transitions=1,
        recent_transitions=((10.25, "closed", "open"),),
    )
    assert ClientSnapshot.from_json(json.loads(json.dumps(snap.to_json()))) == snap


@pytest.mark.parametrize(
    "junk",
    [
        "x",
        {"client": "A"},
        {"client": 3, "at": 1.0, "started_at": 0.0},
        {"client": "A", "at": 1.0, "started_at": 0.0, "recent_transitions": [1]},
    ],
)
def test_junk_is_not_a_snapshot(junk):
    with pytest.raises(ValueError, match="snapshot"):
        ClientSnapshot.from_json(junk)


# -- the board: rates and sums ------------------------------------------------------------------------------


def snap(client: str, at: float, launched: int, shed: int = 0, **more) -> ClientSnapshot:
    return ClientSnapshot(
        client=client,
        at=at,
        started_at=100.0,
        launched=launched,
        shed_by_cause={"throttle": shed} if shed else {},
        **more,
    )


def test_worker_rows_and_the_all_row_that_sums_them():
    board = MitigationsBoard()
    board.begin_test()
    board.update(
        "w1",
        1,
        [
            snap(
                "T",
                101.0,
                100,
                shed=10,
                breaker_state="closed",
                breaker_transitions=0,
                limit=8,
                concurrent=3,
                max_concurrent=5,
            )
        ],
    )
    board.update(
        "w2",
        1,
        [
            snap(
                "T",
                102.0,
                150,
                shed=30,
                breaker_state="open",
                breaker_transitions=1,
                limit=4,
                concurrent=7,
                max_concurrent=9,
            )
        ],
    )
    board.update(
        "w1",
        1,
        [
            snap(
                "T",
                104.0,
                400,
                shed=40,
                breaker_state="closed",
                breaker_transitions=0,
                limit=6,
                concurrent=2,
                max_concurrent=5,
            )
        ],
    )
    rows = board.rows(200.0, 4.0)
    assert [(r.worker, r.client) for r in rows] == [("w1", "T"), ("w2", "T"), (ALL_WORKERS, "T")]
    w1, w2, total = rows
    assert w1.launched_per_s == pytest.approx(100.0)  # (400 - 100) over the 3 s between w1's reports
    assert w2.launched_per_s == pytest.approx(75.0)  # its first report: since the run started, 2 s before
    assert total.launched_total == 550 and total.launched_per_s == pytest.approx(175.0)
    assert total.shed_total == 70 and total.shed_by_cause == {"throttle": 70}
    assert total.shed_per_s == pytest.approx(w1.shed_per_s + w2.shed_per_s)
    assert (total.concurrent, total.max_concurrent, total.limit) == (9, 14, 10)
    assert total.breaker_state == "closed=1;open=1" and total.breaker_transitions_total == 1
    assert total.pool_in_use is None  # no worker has a pool: empty, not 0
    assert board.latest_rows() == rows


def test_rates_span_about_a_second_even_for_a_sample_right_after_the_last():
    board = MitigationsBoard()
    board.begin_test()
    for i in range(1, 9):  # every 250 ms, 100 launches per second
        board.update("local", 1, [snap("T", 100.0 + i * 0.25, 25 * i)])
    board.update("local", 1, [snap("T", 102.002, 201)])  # the final one at test stop, 2 ms later
    [row, _] = board.rows(102.1, 2.1)
    assert row.launched_per_s == pytest.approx(101 / 1.002, rel=1e-3)


def test_rate_baseline_picks_the_newest_snapshot_a_second_old():
    trail = [snap("T", at, 0) for at in (10.0, 10.5, 11.0, 11.5)]
    assert rate_baseline(trail, 12.0).at == 11.0
    assert rate_baseline(trail, 10.7).at == 10.0  # nothing old enough: the oldest
    assert rate_baseline([], 10.0) is None


def test_a_late_report_from_the_last_test_is_ignored():
    board = MitigationsBoard()
    board.update("w1", 1, [snap("T", 101.0, 500)])
    board.begin_test()
    assert board.update("w1", 1, [snap("T", 105.0, 900)]) is False
    assert board.rows(106.0, 0.1) == []
    assert board.update("w1", 2, [snap("T", 106.0, 20)]) is True
    assert [r.launched_total for r in board.rows(106.5, 0.5)] == [20, 20]


def test_an_unchanged_report_is_not_news():
    board = MitigationsBoard()
    board.begin_test()
    assert board.update("w1", 1, [snap("T", 101.0, 5)]) is True
    assert board.update("w1", 1, [snap("T", 104.0, 5)]) is False
    assert board.update("w1", 1, [snap("T", 107.0, 6)]) is True


def test_csv_row_follows_the_contract():
    board = MitigationsBoard()
    board.begin_test()
    board.update(
        "local",
        1,
        [
            snap(
                "B",
                101.0,
                10,
                breaker_state="open",
                breaker_transitions=1,
                pool_in_use=2,
                pool_waiting=0,
                timeouts=3,
            )
        ],
    )
    row = board.rows(1700000000.12345, 1.23456)[0].csv_row()
    assert tuple(row) == MITIGATION_COLUMNS
    assert row["timestamp"] == "1700000000.123" and row["elapsed_s"] == "1.235"
    assert (row["worker"], row["client"], row["launched_total"], row["launched_per_s"]) == (
        "local",
        "B",
        "10",
        "10.00",
    )
    assert (row["breaker_state"], row["breaker_transitions_total"]) == ("open", "1")
    assert (row["limit"], row["throttle_in_flight"], row["queue_depth"]) == ("", "", "")
    assert (row["pool_in_use"], row["pool_waiting"], row["timeouts_total"]) == ("2", "0", "3")


def test_small_helpers():
    assert join_counts({"throttle": 12, "circuit-open": 3, "budget": 0}) == "circuit-open=3;throttle=12"
    assert breaker_summary(["open", None, "open"]) == "open"
    assert breaker_summary([None]) is None
