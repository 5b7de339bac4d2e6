"""Every launched call is accounted for: the ledger's arithmetic, draining at the end of a test, calls
ended as unfinished, nothing leaking from one test into the next, skipped slots reported and latency
timed from the scheduled launch. In-process with Locust's own runner against the real target server."""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace

import gevent
import locust
import pytest
from locust.env import Environment

from locust_plugin.client_stats import ClientStatsCollector
from locust_plugin.ledger import CallLedger, LatencySummary, merge_encoded
from locust_plugin.mitigation_rows import sum_rows
from locust_plugin.mitigations_board import MitigationsBoard
from locust_plugin.runtime import runtimes
from locustfiles.clients import HammerClient
from mitigations.core import Call, ConnectTimeout, Outcome, ServiceUnavailable, ThrottleRejected

# -- the ledger on its own ---------------------------------------------------------------------------------


def outcome(latency_s: float, status: int | None = 200, error=None) -> Outcome:
    call = Call(method="GET", path="/doWork", launched_at=100.0)
    return Outcome(call=call, finished_at=100.0 + latency_s, status=status, error=error)


def test_each_final_outcome_lands_in_exactly_one_column_and_slo_goodput_needs_a_timely_2xx():
    ledger = CallLedger(slo_ms=250)
    finals = [
        outcome(0.100),  # in the SLO
        outcome(0.250),  # exactly on it: still good
        outcome(0.251),  # late: ok, but not SLO goodput
        outcome(0.050, status=304),  # quick, not a 2xx
        outcome(0.020, None, ServiceUnavailable()),
        outcome(3.0, None, ConnectTimeout()),
        outcome(0.0, None, ThrottleRejected()),
    ]
    for final in finals:
        ledger.launch()
        ledger.finish(final)
    ledger.launch()
    ledger.abandon()
    ledger.launch()  # still in flight
    assert (ledger.ok, ledger.slo_ok, ledger.server_errors, ledger.shed, ledger.unfinished) == (4, 2, 2, 1, 1)
    assert ledger.launched == ledger.finished + 1
    assert ledger.errors_by_kind == {"503": 1, "connect-timeout": 1}
    assert ledger.shed_by_cause == {"throttle": 1}
    latency = LatencySummary.of(ledger.histogram)
    assert latency.count == 6  # answered calls only: not the shed one, not the unfinished one
    assert latency.max_ms == pytest.approx(3000, rel=1e-3)
    assert latency.p50_ms == pytest.approx(100, rel=1e-3)  # three significant digits, not two


def test_histograms_from_several_processes_merge_by_adding_not_by_averaging_percentiles():
    fast, slow = CallLedger(1000), CallLedger(1000)
    for _ in range(99):
        fast.launch()
        fast.finish(outcome(0.010))
    slow.launch()
    slow.finish(outcome(2.0))
    merged = LatencySummary.of(merge_encoded([fast.encoded_histogram(), slow.encoded_histogram(), ""]))
    assert merged.count == 100
    assert merged.p99_ms == pytest.approx(10, rel=1e-3)
    assert merged.max_ms == pytest.approx(2000, rel=1e-3)


def test_the_summed_row_merges_the_workers_histograms():
    from locust_plugin.client_rates import Rates
    from locust_plugin.client_stats import ClientSnapshot
    from locust_plugin.mitigation_rows import MitigationRow

    snaps = []
    for worker, latency in (("w1", 0.010), ("w2", 0.900)):
        ledger = CallLedger(1000)
        for _ in range(50):
            ledger.launch()
            ledger.finish(outcome(latency))
        snapshot = ClientSnapshot(
            client="C", at=1.0, started_at=0.0, launched=50, ok=50, slo_ok=50,
            latency_hdr=ledger.encoded_histogram(),
        )  # fmt: skip
        snaps.append((worker, snapshot))
    rows = [MitigationRow.of(1.0, 1.0, worker, snap, Rates()) for worker, snap in snaps]
    total = sum_rows(rows, 1.0, 1.0)
    assert (total.ok_total, total.launched_total) == (100, 100)
    assert total.latency.p50_ms == pytest.approx(10, rel=1e-3)
    assert total.latency.p99_ms == pytest.approx(900, rel=1e-3)
    cells = total.csv_row()
    assert (cells["ok_total"], cells["p99_ms"]) == ("100", "900.095")  # the histogram's bucket, unrounded
    assert {"skipped_total", "unfinished_total", "slo_ok_total", "p999_ms", "max_ms"} <= set(cells)


# -- in-process Locust runs against a real server ---------------------------------------------------


@pytest.fixture
def environment():
    made: list[Environment] = []

    def make(host: str, **options: object) -> Environment:
        env = Environment(user_classes=[HammerClient], host=host, events=locust.events)
        env.parsed_options = SimpleNamespace(**options) if options else None
        env.create_local_runner()
        collector = ClientStatsCollector()
        env.events.request.add_listener(collector.on_request)
        env.collector = collector  # type: ignore[attr-defined]
        made.append(env)
        return env

    yield make
    for env in made:
        env.runner.quit()
        env.events.request.remove_listener(env.collector.on_request)  # type: ignore[attr-defined]


def rows_of(env: Environment) -> dict[tuple[str, str], locust.stats.StatsEntry]:
    return {(e.method, e.name): e for e in env.stats.entries.values()}


@pytest.mark.slow
def test_stopping_a_test_drains_the_calls_in_flight_and_counts_them(start_target, environment):
    server = start_target(sync_work_ms=0, task_delay_ms=400)
    env = environment(server.url)
    env.runner.start(1, spawn_rate=10)
    gevent.sleep(0.6)
    runtime = runtimes(env)["HammerClient"]
    assert runtime.concurrent >= 30  # ~40 requests on the wire, none answered yet for the last 400 ms
    env.runner.stop()  # returns once the drain is over
    ledger = runtime.ledger
    assert runtime.concurrent == 0
    assert ledger.unfinished == 0
    assert ledger.launched == ledger.ok == env.stats.get("/doWork", "GET").num_requests
    assert ledger.launched >= 50
    assert not [key for key in rows_of(env) if key[0] == "UNFINISHED"]


@pytest.mark.slow
def test_calls_still_running_when_the_drain_runs_out_are_unfinished_never_dropped(start_target, environment):
    server = start_target(sync_work_ms=0, task_delay_ms=3000)
    env = environment(server.url, drain_s="0.3")
    env.runner.start(1, spawn_rate=10)
    gevent.sleep(0.5)
    runtime = runtimes(env)["HammerClient"]
    started = time.monotonic()
    env.runner.stop()
    assert time.monotonic() - started < 2.0  # the drain is bounded by --drain-s
    ledger = runtime.ledger
    assert ledger.launched >= 40
    assert ledger.unfinished == ledger.launched  # every one of them was still waiting for its 3 s answer
    assert ledger.ok + ledger.server_errors + ledger.shed == 0
    row = env.stats.get("/doWork", "UNFINISHED")
    assert row.num_requests == row.num_failures == ledger.unfinished
    assert row.avg_response_time >= 300  # they had been in flight at least as long as the drain
    failures = [f for f in env.stats.errors.values() if f.method == "UNFINISHED"]
    assert [repr(f.error) for f in failures] == ["Unfinished('unfinished')"]
    assert env.stats.get("/doWork", "GET").num_requests == 0  # and none of them counted as answered


@pytest.mark.slow
def test_stop_timeout_bounds_the_drain_when_the_user_set_one(start_target, environment):
    server = start_target(sync_work_ms=0, task_delay_ms=3000)
    env = environment(server.url, drain_s="30")
    env.stop_timeout = 0.3
    env.runner.start(1, spawn_rate=10)
    gevent.sleep(0.3)
    started = time.monotonic()
    env.runner.stop()
    assert time.monotonic() - started < 2.0
    assert runtimes(env)["HammerClient"].ledger.unfinished > 0


@pytest.mark.slow
def test_nothing_from_one_test_reaches_the_next(start_target, environment):
    server = start_target(sync_work_ms=0, task_delay_ms=1000)
    env = environment(server.url, drain_s="0.2")
    env.runner.start(3, spawn_rate=100)
    gevent.sleep(0.5)
    env.runner.start(1, spawn_rate=100)  # a ramp-down: two users go, their requests stay in flight
    gevent.sleep(0.2)
    first = runtimes(env)["HammerClient"]
    env.runner.stop()
    assert first.concurrent == 0 and first.ledger.unfinished > 100
    assert first.ledger.launched == first.ledger.finished
    # the second test: a fast server this time, so every answer of the first test would arrive in it
    env.runner.start(1, spawn_rate=10)
    gevent.sleep(1.5)
    env.runner.stop()
    second = runtimes(env)["HammerClient"]
    assert second is not first
    stats = env.stats.get("/doWork", "GET")
    # Locust's stats were reset at the second start; only the second test's calls may be in them
    assert stats.num_requests == second.ledger.ok + second.ledger.server_errors
    assert env.stats.get("/doWork", "UNFINISHED").num_requests == second.ledger.unfinished


@pytest.mark.slow
def test_a_stall_is_timed_from_the_scheduled_launch_and_the_skipped_slots_are_reported(
    start_target, environment, caplog
):
    server = start_target(sync_work_ms=0, task_delay_ms=0)
    env = environment(server.url)
    env.runner.start(1, spawn_rate=10)
    gevent.sleep(0.5)
    runtime = runtimes(env)["HammerClient"]
    spin_until = time.monotonic() + 0.4
    while time.monotonic() < spin_until:  # block the whole process, as a busy load generator would
        pass
    gevent.sleep(0.3)
    with caplog.at_level(logging.WARNING, logger="hammerlab"):
        env.runner.stop()
    ledger = runtime.ledger
    assert ledger.skipped >= 25
    # the slot due when the stall began was launched late, and its latency counts from when it was due
    assert LatencySummary.of(ledger.histogram).max_ms >= 350
    assert ledger.launched == ledger.finished  # skipped slots are not launches
    board = MitigationsBoard()
    board.update("local", 1, env.collector.snapshot(runtimes(env)))  # type: ignore[attr-defined]
    (row,) = [r for r in board.rows(time.time(), 1.0) if r.worker == "all"]
    assert row.csv_row()["skipped_total"] == str(ledger.skipped)
    assert ledger.skipped / (ledger.skipped + ledger.launched) > 0.01  # ~40 of ~120 slots
    assert "the load generator could not keep the rate" in caplog.text
