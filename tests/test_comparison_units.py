"""The comparison runner's parts that need no server: options, load plans, the summary maths over small
CSV fixtures written here, recovery time, the sentences, the burst shape and the progress reader."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from comparison import ROOT
from comparison.__main__ import UsageError, parse_config
from comparison.burst_shape import BurstShape, parse
from comparison.config import ConfigError, RunConfig, build_plan
from comparison.counters import percentile, value_at
from comparison.locust_run import CsvTail, Progress, locust_command
from comparison.narrative import describe
from comparison.readers import ClassFiles, ClientRow, FailureRow, ServerRow
from comparison.scenarios import scenario_of
from comparison.scenarios.capacity import phase_goodput
from comparison.scenarios.outage import recovery_time, window_amplification
from comparison.summary import COLUMNS, NOT_RECOVERED, ClassResult, read_csv, summarise, write_csv
from comparison.tables import markdown_table, terminal_table

STATS_HEADER = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,"
    "Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,"
    "99.99%,100%"
)
SERVER_HEADER = (
    "timestamp,elapsed_s,lag_ms,in_flight,concurrent,sockets,requests_total,completed_total,rejected_total,"
    "errors_total,completed_per_s,rejected_per_s,errors_per_s,faults,peak_lag_ms,peak_in_flight,peak_sockets"
)
OLD_SERVER_HEADER = SERVER_HEADER.removesuffix(",peak_lag_ms,peak_in_flight,peak_sockets")
MITIGATIONS_HEADER = (
    "timestamp,elapsed_s,worker,client,concurrent,max_concurrent,launched_total,launched_per_s,"
    "completed_total,wire_total,wire_failures_total,shed_total,shed_per_s,shed_by_cause,breaker_state,"
    "breaker_transitions_total,limit,throttle_in_flight,queue_depth,pool_in_use,pool_waiting,timeouts_total,"
    "ok_total,server_errors_total,server_error_kinds,unfinished_total,skipped_total,slo_ms,slo_ok_total,"
    "p50_ms,p95_ms,p99_ms,p999_ms,max_ms"
)


# -- options ---------------------------------------------------------------------------------------------


def test_defaults_are_the_issue_s():
    config = parse_config([])
    assert config.scenario == "cliff"
    assert config.duration_s == 30
    assert len(config.clients) == 7 and config.clients[-1] == "AdaptiveClient"
    assert config.passthrough == ()


def test_the_capacity_scenario_defaults_to_a_run_long_enough_for_its_phases():
    assert parse_config(["--scenario", "capacity"]).duration_s == 50
    assert parse_config(["--scenario", "capacity", "--duration", "32"]).duration_s == 32


def test_everything_after_double_dash_goes_to_locust():
    config = parse_config(
        ["--clients", "ThrottledClient", "--", "--max-concurrent", "8", "--keep-alive", "true"]
    )
    assert config.clients == ("ThrottledClient",)
    assert config.passthrough == ("--max-concurrent", "8", "--keep-alive", "true")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (
            ["--scenario", "storm"],
            "--scenario: 'storm' is not one of healthy, cliff, burst, outage, capacity",
        ),
        (
            ["--scenario", "capacity", "--duration", "30"],
            "too short for the capacity scenario: it needs at least 32",
        ),
        (["--duration", "1"], "--duration: must be from 5 to 600 seconds, got 1"),
        (["--duration", "9000"], "--duration: must be from 5 to 600 seconds, got 9000"),
        (["--scenario", "outage", "--duration", "10"], "too short for the outage scenario"),
        (["--scenario", "burst", "--duration", "6"], "too short for the burst scenario"),
        (["--clients", ","], "--clients: name at least one client class"),
        (["--clients", "A,A"], "--clients: A is named twice"),
        (["--capacity", "0"], "--capacity: must be from 1 to 5000"),
        (["--launch-rate", "10", "--rate-multiplier", "2"], "either --launch-rate or --rate-multiplier"),
        (["--host", "localhost:3000"], "--host: 'localhost:3000' must be an http:// or https:// URL"),
        (["--", "-u", "10"], "after --: -u: set by the runner"),
        (["--", "--run-time=5s"], "after --: '--run-time=5s' (--run-time): set by the runner"),
    ],
)
def test_bad_options_are_one_line_naming_the_option(argv, fragment):
    with pytest.raises(ConfigError) as caught:
        parse_config(argv)
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)


def test_argparse_errors_become_one_line():
    with pytest.raises(UsageError, match="must be a whole number of seconds"):
        parse_config(["--duration", "7.5"])
    with pytest.raises(UsageError, match="unrecognized arguments: --max-concurrent"):
        parse_config(["--max-concurrent", "8"])


# -- load plans ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("scenario", "multiple"), [("healthy", 0.8), ("cliff", 2.0), ("outage", 0.8)])
def test_constant_scenarios_offer_a_multiple_of_capacity_from_one_user(scenario, multiple):
    plan = build_plan(RunConfig(scenario=scenario, duration_s=30), capacity_rps=90)
    assert plan.users == 1
    assert plan.launch_rate == pytest.approx(multiple * 90)
    assert plan.offered_rps == plan.launch_rate
    assert plan.offered_at(12.3) == plan.launch_rate


def test_overrides_replace_the_scenario_rate():
    assert build_plan(RunConfig(rate_multiplier=1.5), 80).offered_rps == pytest.approx(120)
    assert build_plan(RunConfig(launch_rate=33), 80).offered_rps == pytest.approx(33)


def test_outage_sits_mid_run_with_healthy_time_on_both_sides():
    plan = build_plan(RunConfig(scenario="outage", duration_s=30), 100)
    assert (plan.outage_at_s, plan.outage_s) == (10.0, 10.0)
    short = build_plan(RunConfig(scenario="outage", duration_s=20), 100)
    assert short.outage_at_s == 5.0


def test_capacity_change_sits_mid_run_and_needs_the_reduced_capacity():
    plan = build_plan(RunConfig(scenario="capacity", duration_s=50), 90, reduced_capacity_rps=47)
    assert plan.offered_rps == pytest.approx(99)  # 1.1 x C
    assert (plan.capacity_change_at_s, plan.capacity_change_s, plan.reduced_capacity_rps) == (15.0, 20.0, 47)
    assert plan.event_at_s == 15.0
    assert plan.outage_s is None
    with pytest.raises(ValueError, match="needs the reduced capacity"):
        build_plan(RunConfig(scenario="capacity", duration_s=50), 90)
    assert build_plan(RunConfig(scenario="outage", duration_s=30), 90).event_at_s == 10.0
    assert build_plan(RunConfig(), 90).event_at_s is None


def test_burst_cycles_between_half_and_three_times_capacity():
    plan = build_plan(RunConfig(scenario="burst", duration_s=20), 100)
    assert plan.burst is not None
    assert plan.offered_at(1) == pytest.approx(50)  # quiet first
    assert plan.offered_at(8) == pytest.approx(300)  # peak from 7 s to 10 s
    assert plan.offered_at(11) == pytest.approx(50)
    assert plan.burst.peaks(20) == [(7.0, 10.0), (17.0, 20.0)]
    # 14 s at 50/s and 6 s at 300/s over 20 s
    assert plan.offered_rps == pytest.approx((14 * 50 + 6 * 300) / 20)


def test_burst_shape_follows_its_spec_and_stops_at_the_end():
    spec = parse("quiet_users=1,peak_users=6,quiet_s=7,peak_s=3,duration_s=20")
    shape = BurstShape()
    shape.spec = spec
    for t, users in [(0.5, 1), (7.5, 6), (9.9, 6), (10.1, 1), (17.2, 6)]:
        shape.start_time -= t - shape.get_run_time()
        assert shape.tick()[0] == users
    shape.start_time -= 20.5 - shape.get_run_time()
    assert shape.tick() is None
    with pytest.raises(ValueError, match="needs peak_s"):
        parse("quiet_users=1,peak_users=6,quiet_s=7,duration_s=20")


def test_locust_command_matches_the_plan(tmp_path):
    files = ClassFiles(tmp_path / "HammerClient")
    plan = build_plan(RunConfig(duration_s=12), 80)
    command, env = locust_command("HammerClient", files, "http://127.0.0.1:9", plan, ("--keep-alive", "true"))
    assert command[-1] == "HammerClient"
    assert command[command.index("-u") + 1] == "1"
    assert command[command.index("-t") + 1] == "12s"
    assert float(command[command.index("--launch-rate") + 1]) == pytest.approx(160)
    assert command[command.index("--csv") + 1] == str(files.prefix)
    assert "--csv-full-history" in command
    assert "--keep-alive" in command
    assert "HAMMERLAB_BURST" not in env
    burst = build_plan(RunConfig(scenario="burst", duration_s=20), 80)
    command, env = locust_command("HammerClient", files, "http://127.0.0.1:9", burst, ())
    assert "-u" not in command and "-t" not in command
    # absolute paths: Locust runs in the user's folder, the lab's files live wherever it is installed
    shape = ROOT / "comparison" / "burst_shape.py"
    assert command[command.index("-f") + 1] == f"{ROOT / 'locustfiles'},{shape}"
    assert float(command[command.index("--launch-rate") + 1]) == pytest.approx(40)
    assert env["HAMMERLAB_BURST"].endswith("duration_s=20")


# -- the summary over fixture files ----------------------------------------------------------------------


def write(path: Path, header: str, rows: list[str]) -> None:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")


def mitigation_row(t: float, client: str, worker: str, launched: int, wire: int, failed: int, shed: int,
                   concurrent: int = 3, max_concurrent: int = 9, ok: int = 0, unfinished: int = 0,
                   skipped: int = 0, slo_ok: int = 0, errors: str = "", causes: str = "",
                   latency: str = ",,,,") -> str:  # fmt: skip
    return (
        f"{1000 + t:.3f},{t:.3f},{worker},{client},{concurrent},{max_concurrent},{launched},0,{launched},"
        f"{wire},{failed},{shed},0,{causes},,,,,,,,0,"
        f"{ok},{failed},{errors},{unfinished},{skipped},1000.00,{slo_ok},{latency}"
    )


@pytest.fixture
def fixture_run(tmp_path: Path) -> ClassFiles:
    """Files as one ThrottledClient run would leave them: 10 s, 800 wire (50 failed), 200 shed."""
    files = ClassFiles(tmp_path / "ThrottledClient")
    write(
        files.stats,
        STATS_HEADER,
        [
            "GET,/doWork,780,50,40,55,10,900,19,78.0,5.0,40,45,50,55,70,120,300,450,800,900,900",
            "GET,/doWork [retry],20,0,40,55,10,90,19,2.0,0.0,40,45,50,55,70,80,85,90,90,90,90",
            "SHED,/doWork [throttle],150,150,0,0,0,0,0,15.0,15.0,0,0,0,0,0,0,0,0,0,0,0",
            "SHED,/doWork [circuit-open],50,50,0,0,0,0,0,5.0,5.0,0,0,0,0,0,0,0,0,0,0,0",
            ",Aggregated,1000,250,40,55,0,900,19,100.0,25.0,40,45,50,55,70,120,300,450,800,900,900",
        ],
    )
    write(
        files.failures,
        "Method,Name,Error,Occurrences,First Seen,Last Seen",
        [
            "GET,/doWork,ConnectTimeout('connect-timeout'),30,x,y",
            "GET,/doWork,ServiceUnavailable('503'),20,x,y",
            "SHED,/doWork [throttle],ThrottleRejected('throttle'),150,x,y",
            "SHED,/doWork [circuit-open],CircuitOpen('circuit-open'),50,x,y",
        ],
    )
    lags = [5, 10, 20, 40, 80, 160, 320, 640, 30, 15, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3]
    # the server's own peaks: a lag of 910 ms, 12 in flight and 31 sockets that fell between samples
    peaks = [
        (max(lags[: i + 1]) if i < 5 else 910.0, 12 if i > 2 else 2, 31 if i > 2 else 10) for i in range(20)
    ]
    write(
        files.server,
        SERVER_HEADER,
        [
            f"{1000 + i * 0.5:.3f},{i * 0.5:.3f},{lag},{i % 7},{i % 5},{10 + i},{100 * i},0,0,0,,,,,"
            f"{peaks[i][0]},{peaks[i][1]},{peaks[i][2]}"
            for i, lag in enumerate(lags)
        ],
    )
    write(
        files.mitigations,
        MITIGATIONS_HEADER,
        [
            mitigation_row(0.5, "ThrottledClient", "local", 50, 40, 2, 8, max_concurrent=99),
            mitigation_row(0.5, "ThrottledClient", "all", 50, 40, 2, 8, max_concurrent=7),
            mitigation_row(0.5, "OtherClient", "all", 50, 40, 2, 8, max_concurrent=500),
            mitigation_row(
                10.0,
                "ThrottledClient",
                "all",
                1040,
                800,
                50,
                200,
                max_concurrent=16,
                concurrent=0,
                ok=750,
                unfinished=40,
                skipped=3,
                slo_ok=600,
                errors="503=20;connect-timeout=30",
                causes="circuit-open=50;throttle=150",
                latency="40.123,120.500,451.200,801.000,903.100",
            ),
        ],
    )
    return files


def test_summary_takes_each_number_from_its_source(fixture_run):
    plan = build_plan(RunConfig(duration_s=10), capacity_rps=60)
    summary = summarise(ClassResult("ThrottledClient", fixture_run), plan)
    # the ledger's last `all` row: 1040 launched = 750 ok + 50 failed + 200 shed + 40 unfinished
    assert (summary.launched, summary.ok, summary.server_errors, summary.shed, summary.unfinished) == (
        1040, 750, 50, 200, 40)  # fmt: skip
    assert summary.accounted
    assert summary.lost == 290  # 50 failed + 200 shed + 40 unfinished nobody kept: launched - ok
    assert summary.deferred is summary.replayed is summary.expired is summary.kept is None  # no Defer
    assert summary.skipped == 3 and not summary.generator_behind  # 3 of 1043 intended is under 1 %
    assert summary.goodput_rps == pytest.approx(75.0)  # 750 ok over Locust's 10 s (1000 at 100/s)
    assert summary.slo_goodput_rps == pytest.approx(60.0)  # 600 within the SLO, over the same 10 s
    assert summary.slo_attainment == pytest.approx(600 / 1043)  # of the intended calls: 3 were skipped
    assert summary.slo_ms == 1000
    assert summary.server_error_kinds == "connect-timeout=30;503=20"
    assert summary.shed_kinds == "throttle=150;circuit-open=50"
    # HDR percentiles, not Locust's two-digit buckets (its row says 40/120/450)
    assert (summary.p50_ms, summary.p95_ms, summary.p99_ms, summary.p999_ms, summary.max_ms) == (
        40.123, 120.5, 451.2, 801.0, 903.1)  # fmt: skip
    assert summary.max_client_concurrent == 16  # the class's `all` rows only
    # maxima take the server's own peaks, which saw what fell between samples; the p95 is the samples'
    assert summary.server_max_lag_ms == 910
    assert summary.server_p95_lag_ms == 320  # nearest rank: the 19th of 20
    assert summary.server_max_sockets == 31
    assert summary.server_max_in_flight == 12
    assert summary.recovery_s is None  # not the outage scenario
    # 800 attempts on the wire for 1040 launched calls (200 shed, 40 never finished)
    assert summary.amplification == pytest.approx(800 / 1040)
    assert summary.outage_amplification is None
    assert summary.reduced_capacity_rps is summary.goodput_reduced_rps is summary.goodput_restored_rps is None
    assert summary.skipped_note() is None
    cells = summary.cells()
    assert (cells["p50_ms"], cells["p99_ms"], cells["max_ms"], cells["slo_attainment"]) == (
        "40.1", "451", "903", "0.575")  # fmt: skip
    assert list(cells) == list(COLUMNS)
    assert (cells["capacity_rps"], cells["offered_rps"], cells["recovery_s"]) == ("60.0", "120.0", "")
    assert (cells["amplification"], cells["outage_amplification"], cells["goodput_reduced_rps"]) == (
        "0.77",
        "",
        "",
    )


def test_a_server_csv_from_before_the_peaks_still_gives_the_sampled_maxima(fixture_run):
    lags = [5, 640, 30]
    write(
        fixture_run.server,
        OLD_SERVER_HEADER,
        [f"{1000 + i:.3f},{i:.3f},{lag},{4 + i},0,{20 + i},0,0,0,0,,,," for i, lag in enumerate(lags)],
    )
    summary = summarise(ClassResult("ThrottledClient", fixture_run), build_plan(RunConfig(), 60))
    assert (summary.server_max_lag_ms, summary.server_max_in_flight, summary.server_max_sockets) == (
        640,
        6,
        22,
    )


def test_summary_csv_round_trips_with_the_issue_s_columns(fixture_run, tmp_path):
    plan = build_plan(RunConfig(duration_s=10), capacity_rps=60)
    summary = summarise(ClassResult("ThrottledClient", fixture_run), plan)
    write_csv([summary], tmp_path / "summary.csv")
    with (tmp_path / "summary.csv").open() as handle:
        assert next(csv.reader(handle)) == list(COLUMNS)
    (row,) = read_csv(tmp_path / "summary.csv")
    assert (row["goodput_rps"], row["slo_goodput_rps"], row["unfinished"]) == ("75.0", "60.0", "40")
    assert row["shed_kinds"] == "throttle=150;circuit-open=50"
    assert list(COLUMNS[4:8]) == ["slo_ms", "slo_goodput_rps", "slo_attainment", "goodput_rps"]
    table = markdown_table([summary])
    assert table.splitlines()[0].count("|") == len(COLUMNS) + 1
    terminal = terminal_table([summary])
    assert "ThrottledClient" in terminal
    assert "amplif." in terminal
    assert "recovery s" not in terminal and "goodput at C'" not in terminal  # empty in every row


def test_missing_sampler_files_leave_their_columns_empty(fixture_run):
    fixture_run.server.unlink()
    fixture_run.mitigations.unlink()
    summary = summarise(ClassResult("ThrottledClient", fixture_run), build_plan(RunConfig(), 60))
    cells = summary.cells()
    assert cells["server_max_lag_ms"] == cells["max_client_concurrent"] == cells["server_max_sockets"] == ""
    assert cells["p99_ms"] == ""
    assert (cells["launched"], cells["goodput_rps"], cells["slo_goodput_rps"]) == ("0", "0.0", "0.0")


def test_failure_kind_is_the_stable_exception_message():
    assert FailureRow("GET", "/doWork", "ConnectTimeout('connect-timeout')", 1).kind == "connect-timeout"
    assert FailureRow("GET", "/doWork", "HttpServerError('500')", 1).kind == "500"
    assert FailureRow("GET", "/doWork", "something odd", 1).kind == "something odd"


def test_percentile_is_nearest_rank():
    assert percentile([], 0.95) is None
    assert percentile([3.0], 0.95) == 3.0
    assert percentile([float(i) for i in range(1, 101)], 0.95) == 95.0


# -- recovery --------------------------------------------------------------------------------------------


def rows_with_goodput(rates: list[float], step: float = 0.25, start: float = 0.0) -> list[ClientRow]:
    """Client rows every `step` s whose goodput over each step is the given rate."""
    rows, good = [], 0.0
    for i, rate in enumerate(rates):
        good += rate * step
        rows.append(ClientRow(start + i * step, i * step, 0, 0, 0, round(good), 0, 0))
    return rows


def test_recovery_is_the_first_full_second_back_at_ninety_percent():
    # outage until t=10; goodput 0 until 11.5, then 100/s; offered 100/s
    rates = [100.0] * 20 + [0.0] * 26 + [100.0] * 40
    rows = rows_with_goodput(rates)
    assert recovery_time(rows, outage_end=10.0, offered_rps=100) == pytest.approx(1.5, abs=0.26)


def test_recovery_at_once_is_zero_and_never_is_none():
    rows = rows_with_goodput([100.0] * 80)
    assert recovery_time(rows, outage_end=5.0, offered_rps=100) == pytest.approx(0.0, abs=0.26)
    dead = rows_with_goodput([100.0] * 20 + [50.0] * 60)
    assert recovery_time(dead, outage_end=5.0, offered_rps=100) is None


def test_outage_summary_says_never_when_goodput_never_returns(fixture_run):
    config = RunConfig(scenario="outage", duration_s=20)
    plan = build_plan(config, capacity_rps=60)
    result = ClassResult("ThrottledClient", fixture_run, outage=(1002.0, 1012.0))
    summary = scenario_of("outage").adjust(summarise(result, plan), result, plan, config)
    assert summary.recovery_s == NOT_RECOVERED


# -- amplification and phases ----------------------------------------------------------------------------


def test_amplification_counts_every_attempt_per_launched_request(fixture_run):
    """Attempts on the wire (retries and replays included) over the ledger's launched calls."""
    plan = build_plan(RunConfig(duration_s=10), capacity_rps=60)
    rows = fixture_run.mitigations.read_text().splitlines()
    retried = rows[-1].replace(",1040,0,1040,800,", ",1040,0,1040,1300,", 1)  # 800 -> 1300 attempts
    fixture_run.mitigations.write_text("\n".join([*rows[:-1], retried]) + "\n")
    summary = summarise(ClassResult("ThrottledClient", fixture_run), plan)
    assert summary.amplification == pytest.approx(1300 / 1040)


def server_row(t: float, requests: int) -> ServerRow:
    return ServerRow(t, t, 0.0, 0, 0, 0, 0, "", requests_total=requests)


def test_outage_amplification_is_server_requests_over_launched_inside_the_window():
    # the client launches 80/s throughout; the server receives 80/s, then 240/s during the outage [10, 20]
    client = [ClientRow(t / 4, t / 4, 0, 0, 20 * t, 0, 0, 0) for t in range(0, 121)]
    server = [server_row(t / 4, 20 * t + (40 * (min(t, 80) - 40) if t > 40 else 0)) for t in range(0, 121)]
    assert window_amplification(server, client, (10.0, 20.0)) == pytest.approx(3.0)
    assert window_amplification(server, client, (25.0, 29.0)) == pytest.approx(1.0)
    assert window_amplification(server, client, (25.0, 40.0)) is None  # past the last sample
    assert value_at([(0.0, 0.0), (1.0, 10.0)], 0.25) == pytest.approx(2.5)
    assert value_at([(0.0, 0.0), (1.0, 10.0)], 1.0) == 10.0


def test_phase_goodput_skips_the_settling_time_and_measures_to_the_end_of_each_phase():
    # goodput 90/s until 15 s, 20/s for 3 s, 45/s until 35 s, 30/s for 3 s, then 88/s until 50 s
    rates = [90.0] * 61 + [20.0] * 12 + [45.0] * 68 + [30.0] * 12 + [88.0] * 47  # row i: ((i-1)/4, i/4]
    rows = rows_with_goodput(rates, start=1000.0)
    reduced, restored = phase_goodput(rows, (1015.0, 1035.0))
    assert reduced == pytest.approx(45.0, abs=0.1)
    assert restored == pytest.approx(88.0, abs=0.1)


def test_capacity_summary_and_sentences(fixture_run):
    plan = build_plan(RunConfig(scenario="capacity", duration_s=32), 60, reduced_capacity_rps=31)
    rates = [60.0] * 25 + [25.0] * 80 + [55.0] * 23
    rows = rows_with_goodput(rates, start=1000.0)
    lines = [
        mitigation_row(r.timestamp - 1000, "ThrottledClient", "all", 0, r.wire_total, 0, 0) for r in rows
    ]
    write(fixture_run.mitigations, MITIGATIONS_HEADER, lines)
    result = ClassResult("ThrottledClient", fixture_run, capacity_change=(1006.0, 1026.0))
    summary = scenario_of("capacity").adjust(summarise(result, plan), result, plan, RunConfig())
    assert summary.reduced_capacity_rps == 31
    assert summary.goodput_reduced_rps == pytest.approx(25.0, abs=0.1)
    assert summary.goodput_restored_rps == pytest.approx(55.0, abs=0.1)
    assert summary.recovery_s is None and summary.outage_amplification is None
    from dataclasses import replace

    adaptive = replace(summary, client="AdaptiveClient", goodput_reduced_rps=29.0, goodput_restored_rps=58.0)
    text = " ".join(describe([summary, adaptive], plan))
    assert "doubled for 20 s from 6 s (capacity 31 requests/s then)" in text
    assert (
        "While the capacity was reduced to 31 requests/s, AdaptiveClient served 29 requests/s (94 % of it)"
        in text
    )
    assert "and ThrottledClient served 25 requests/s" not in text
    assert "and ThrottledClient 25 requests/s (81 % of it)" in text
    assert "After it was restored to 60 requests/s, AdaptiveClient served 58 requests/s (97 % of it)" in text
    assert "goodput at C'" in terminal_table([summary, adaptive])


# -- sentences -------------------------------------------------------------------------------------------


def test_sentences_come_from_the_numbers(fixture_run):
    plan = build_plan(RunConfig(duration_s=10), capacity_rps=60)
    throttled = summarise(ClassResult("ThrottledClient", fixture_run), plan)
    from dataclasses import replace

    # HammerClient got more answers (more goodput at any latency) but most came too late
    hammer = replace(
        throttled, client="HammerClient", server_max_lag_ms=1240.0, server_p95_lag_ms=1100.0, shed=0,
        shed_kinds="", launched=1000, ok=620, slo_ok=100, server_errors=380,
        server_error_kinds="connect-timeout=380", unfinished=0, goodput_rps=62.0, slo_goodput_rps=10.0,
        slo_attainment=0.1, p99_ms=5500.0,
    )  # fmt: skip
    text = " ".join(describe([hammer, throttled], plan))
    assert "The most SLO goodput came from ThrottledClient: 60.0 requests/s answered 2xx within 1,000" in text
    assert "58 % of the requests it meant to launch" in text
    assert "HammerClient 10.0/s, as 52 % came late and 38 % failed (mostly connect-timeout)" in text
    assert "HammerClient drove the server's lag to 1,240 ms" in text
    assert "lost 38 % of its requests on the wire (mostly connect-timeout)" in text
    assert "ThrottledClient kept the lag at 910 ms" in text
    assert "holding back 19 % at the client (mostly throttle)" in text
    assert "at a p99 of 451 ms" in text
    calmer = replace(hammer, server_max_lag_ms=300.0, server_errors=0, server_error_kinds="")
    assert " ".join(describe([calmer, throttled], plan)) != text


def test_outage_sentences_follow_failures_and_recovery(fixture_run):
    from dataclasses import replace

    plan = build_plan(RunConfig(scenario="outage", duration_s=30), capacity_rps=60)
    base = summarise(ClassResult("ThrottledClient", fixture_run, outage=(1002.0, 1012.0)), plan)
    naive = replace(base, client="NaiveRetryClient", server_errors=2103, server_error_kinds="503=2103",
                    wire_attempts=2731, launched=1402, recovery_s=0.09)  # fmt: skip
    careful = replace(base, client="RetryClient", server_errors=702, shed=54, shed_kinds="budget=54",
                      recovery_s=NOT_RECOVERED)  # fmt: skip
    text = " ".join(describe([naive, careful], plan))
    assert "NaiveRetryClient put 2,731 requests on the wire for 1,402 it launched (1.95 x)" in text
    assert "and 2,103 failed (mostly 503)" in text
    assert "RetryClient let the fewest fail, 702, holding back 54 at the client (mostly budget)" in text
    assert "back to 90 % of the offered load in 0.09 s" in text
    assert "RetryClient did not get back there before the run ended" in text


# -- the live progress reader ----------------------------------------------------------------------------


def test_csv_tail_returns_only_complete_new_rows(tmp_path):
    path = tmp_path / "x_mitigations.csv"
    tail = CsvTail(path)
    assert tail.new_rows() == []
    path.write_text(MITIGATIONS_HEADER + "\n" + mitigation_row(1, "A", "all", 10, 8, 1, 2) + "\n" + "1001")
    first = tail.new_rows()
    assert [row["wire_total"] for row in first] == ["8"]
    with path.open("a") as handle:
        handle.write(".5,1.5,all,A,3,9,20,0,20,16,2,4,0,,,,,,,,,0\n")
    second = tail.new_rows()
    assert [row["timestamp"] for row in second] == ["1001.5"]


def test_progress_line_shows_live_rates(tmp_path):
    out = (tmp_path / "out.txt").open("w")
    progress = Progress(out, "A", 2, 6, 30)
    keys = ("worker", "timestamp", "wire_total", "wire_failures_total", "shed_total", "concurrent")
    samples = [
        ("all", "10", "100", "10", "5", "3"),
        ("local", "10.5", "0", "0", "0", "0"),  # per-worker rows are not the class's sum
        ("all", "11", "180", "30", "45", "7"),
    ]
    progress.feed([{"client": "A", **dict(zip(keys, sample, strict=True))} for sample in samples])
    late = {"client": "A", "worker": "all", "timestamp": "11.05", "wire_total": "190",
            "wire_failures_total": "30", "shed_total": "45", "concurrent": "7"}  # fmt: skip
    progress.feed([late])  # 50 ms after the last sample: measured over the second since t=10 instead
    assert progress.rates.goodput == pytest.approx((190 - 30 - 90) / 1.05)
    line = progress.line(12.0)
    assert line.startswith("class 2 of 6 A")
    assert "12.0/30 s" in line
    assert "goodput   66.7/s" in line and "errors   19.0/s" in line and "shed   38.1/s" in line


DEFER_COLUMNS = (
    ",deferred_total,replayed_total,expired_total,defer_queue_depth,replay_p50_ms,replay_p95_ms,"
    "replay_p99_ms,replay_max_ms,kept_total"
)


def deferring_run(fixture_run: ClassFiles, expired: int, kept: int, killed: int) -> ClassFiles:
    """DeferredClient's files: 1000 launched, 800 ok, 30 failed, `expired` shed as expired, and `kept`
    still queued plus `killed` fresh calls still in flight when the drain ran out (both unfinished)."""
    files = ClassFiles(fixture_run.prefix.with_name("DeferredClient"))
    for name in ("stats", "server", "failures"):
        getattr(files, name).write_bytes(getattr(fixture_run, name).read_bytes())
    unfinished = kept + killed
    row = mitigation_row(
        10.0,
        "DeferredClient",
        "all",
        800 + 30 + expired + unfinished,
        830 + expired,
        30,
        expired,
        concurrent=0,
        ok=800,
        unfinished=unfinished,
        slo_ok=500,
        errors="503=30",
        causes=f"defer-expired={expired}" if expired else "",
    )
    write(files.mitigations, MITIGATIONS_HEADER + DEFER_COLUMNS,
          [row + f",500,{500 - expired - kept},{expired},{kept},,,,,{kept}"])  # fmt: skip
    return files


def test_a_deferring_client_is_described_by_what_it_kept_replayed_and_lost(fixture_run):
    plan = build_plan(RunConfig(scenario="burst", duration_s=20), capacity_rps=60)
    base = summarise(ClassResult("ThrottledClient", fixture_run), plan)
    files = deferring_run(fixture_run, expired=0, kept=170, killed=0)
    deferred = summarise(ClassResult("DeferredClient", files), plan)
    assert deferred.accounted and (deferred.launched, deferred.kept) == (1000, 170)
    assert deferred.lost == 30  # 1000 launched - 800 ok - 170 still on disk: the 30 server errors
    text = " ".join(describe([base, deferred], plan))
    assert (
        "DeferredClient kept 500 requests on disk instead of dropping them, replayed 330 of them and "
        "lost 30; 170 were still queued when the run ended (kept on disk for the next run)." in text
    )
    assert "ThrottledClient kept" not in text  # no Defer: no such sentence


def test_lost_counts_expired_deferrals_and_unfinished_calls_nobody_kept(fixture_run):
    plan = build_plan(RunConfig(scenario="burst", duration_s=20), capacity_rps=60)
    files = deferring_run(fixture_run, expired=120, kept=40, killed=10)
    summary = summarise(ClassResult("DeferredClient", files), plan)
    assert (summary.launched, summary.ok, summary.unfinished, summary.expired) == (1000, 800, 50, 120)
    assert summary.accounted
    # launched - ok - kept: 30 server errors + 120 expired + 10 unfinished that nobody kept
    assert summary.lost == 160 and summary.cells()["kept"] == "40"
    text = " ".join(describe([summary], plan))
    assert "lost 160 (120 of them expired unsent" in text


def test_the_recorded_command_can_be_typed_again():
    from comparison.runner import command_line

    argv = ["python -m comparison", "--scenario", "cliff", "--check", "A: x >= 1"]
    assert command_line(argv) == "python -m comparison --scenario cliff --check 'A: x >= 1'"


# -- a rate schedule -------------------------------------------------------------------------------------


def test_a_rate_schedule_sets_the_offered_load_over_time_and_goes_to_locust(tmp_path):
    from dataclasses import replace

    from comparison.schedule_shape import parse as parse_schedule

    plan = replace(build_plan(RunConfig(duration_s=10), 80), launch_rate=8.0, schedule=((0.0, 2), (4.0, 5)))
    assert (plan.offered_at(0.0), plan.offered_at(3.9), plan.offered_at(4.0), plan.offered_at(9)) == (
        16.0, 16.0, 40.0, 40.0)  # fmt: skip
    split = plan.split(2)
    assert split.schedule == ((0.0, 4), (4.0, 10)) and split.offered_at(5) == pytest.approx(40.0)
    files = ClassFiles(tmp_path / "HammerClient")
    command, env = locust_command("HammerClient", files, "http://127.0.0.1:9", plan, ())
    shape = ROOT / "comparison" / "schedule_shape.py"
    assert command[command.index("-f") + 1] == f"{ROOT / 'locustfiles'},{shape}"
    assert "-u" not in command and "-t" not in command
    assert parse_schedule(env["HAMMERLAB_SCHEDULE"]) == (10.0, [(0.0, 2), (4.0, 5)])
    with pytest.raises(ValueError, match="must increase"):
        parse_schedule("duration_s=10;0=2,4=3,4=5")
