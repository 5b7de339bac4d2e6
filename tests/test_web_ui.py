"""The tabs' rows, the sparkline, and the fault control's loopback rule (the browser test drives the rest)."""

from __future__ import annotations

import socket

import pytest

from locust_plugin import web_ui
from locust_plugin.client_stats import ClientSnapshot
from locust_plugin.mitigations_board import MitigationsBoard
from locust_plugin.server_sample import make_sample
from locust_plugin.target import loopback_problem
from locust_plugin.web_tables import mitigation_rows, server_rows, sparkline
from locust_plugin.web_ui import forward_fault


def test_sparkline_keeps_spikes_and_scales_to_the_window():
    assert sparkline([]) == ""
    assert sparkline([5, 5, 5]) == "▁▁▁"
    assert sparkline([0, 7]) == "▁█"
    line = sparkline([0] * 59 + [100], points=30)  # a one-sample spike in the last bucket survives
    assert len(line) == 30 and line.endswith("█") and set(line[:-1]) == {"▁"}


def body(at: float, lag: float, completed: int, faults=()):
    return {
        "time": at,
        "lag_ms": lag,
        "in_flight": 4,
        "concurrent": 3,
        "sockets": 6,
        "requests_total": completed,
        "completed_total": completed,
        "rejected_total": 0,
        "errors_total": 0,
        "faults": list(faults),
    }


def test_server_rows_show_now_low_high_and_trend():
    first = make_sample(body(1.0, 10.0, 0), None, received_at=1000.0, started_at=999.0)
    second = make_sample(
        body(2.0, 250.0, 80, [{"kind": "outage", "remaining_s": 4.0}]),
        first,
        received_at=1001.0,
        started_at=999.0,
    )
    rows = {row["metric"]: row for row in server_rows([first, second], "sampling")}
    assert rows["lag ms"] == {"metric": "lag ms", "now": "250", "low": "10", "high": "250", "trend": "▁█"}
    assert rows["sockets"]["now"] == "5"
    assert rows["completed/s"]["now"] == "80.0"
    assert rows["active faults"]["now"] == "outage 4.0 s left"
    assert rows["sampler"]["now"] == "sampling"


def test_server_rows_before_any_sample_say_so():
    rows = {
        row["metric"]: row for row in server_rows([], "cannot reach http://127.0.0.1:9/stats; still trying")
    }
    assert rows["lag ms"]["now"] == "-"
    assert rows["sampler"]["now"].startswith("cannot reach")
    assert rows["sampler"]["trend"] == "no sample yet"


def test_a_host_that_is_not_a_target_gets_one_line_saying_so():
    status = "http://127.0.0.1:9 is not a Hammerlab target (it has no Hammerlab /stats: it answered HTTP 404)"
    rows = server_rows([], status, is_target=False)
    assert rows == [{"metric": "not a Hammerlab target", "now": status, "low": "", "high": "", "trend": ""}]


def test_mitigation_rows_show_sums_only_with_several_workers():
    board = MitigationsBoard()
    board.begin_test()
    breaker = {
        "breaker_state": "open",
        "breaker_transitions": 1,
        "recent_transitions": ((99.0, "closed", "open"),),
    }
    board.update(
        "local",
        1,
        [
            ClientSnapshot(
                client="BreakerClient",
                at=101.0,
                started_at=100.0,
                launched=50,
                shed_by_cause={"circuit-open": 7},
                **breaker,
            )
        ],
    )
    [row] = mitigation_rows(board.rows(101.0, 1.0), now=101.0)
    assert row["worker"] == "local" and row["breaker"] == "open"
    assert row["transitions"] == "closed→open 2.0 s ago"
    assert row["causes"] == "circuit-open=7" and row["launched"] == "50"
    board.update("w2", 1, [ClientSnapshot(client="BreakerClient", at=101.0, started_at=100.0, launched=10)])
    shown = mitigation_rows(board.rows(102.0, 2.0), now=102.0)
    assert [(r["worker"], r["concurrent"]) for r in shown] == [
        ("local", "0 (0)"),
        ("w2", "0 (0)"),
        ("all", "0 (0)"),
    ]


@pytest.mark.parametrize("url", ["http://127.0.0.1:3000", "http://localhost:3000", "http://[::1]:3000"])
def test_loopback_targets_may_get_faults(url):
    assert loopback_problem(url) is None


@pytest.mark.parametrize("url", ["http://10.1.2.3:3000", "http://example.com", "http://0.0.0.0:3000", ""])
def test_other_targets_are_refused_with_a_reason(url):
    problem = loopback_problem(url)
    assert problem and "\n" not in problem


def test_fault_control_refuses_a_remote_target_without_calling_it(monkeypatch):
    def no_request(*_args, **_kwargs):  # even a broken guard must not open a socket off this machine
        raise AssertionError("forward_fault tried to reach a remote target")

    monkeypatch.setattr(web_ui, "fetch", no_request)
    data, status = forward_fault("http://192.0.2.10:3000", "POST", {"kind": "outage", "duration_s": 5})
    assert status == 403
    assert data["error"].startswith("fault controls work only when the target is on loopback")


@pytest.mark.slow
def test_fault_control_forwards_to_a_loopback_target(start_target):
    server = start_target()
    data, status = forward_fault(server.url, "POST", {"kind": "outage", "duration_s": 30})
    assert status == 201 and data["fault"]["kind"] == "outage"
    assert [f["kind"] for f in server.stats()["faults"]] == ["outage"]
    data, status = forward_fault(server.url, "POST", {"kind": "outage"})  # the target's own check
    assert status == 400 and "duration_s" in data["error"]
    data, status = forward_fault(server.url, "POST", ["not", "an", "object"])
    assert status == 400 and "JSON object" in data["error"]
    data, status = forward_fault(server.url, "DELETE", None)
    assert (status, data) == (200, {"removed": 1})
    assert server.stats()["faults"] == []


def test_fault_control_says_when_the_target_is_down():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data, status = forward_fault(f"http://127.0.0.1:{port}", "DELETE", None)
    assert status == 502 and data["error"].startswith("cannot reach")


def test_every_client_option_survives_the_web_form_and_the_trip_to_workers():
    """Locust's /swarm rebuilds each option as type(current)(form text), and workers get the options through
    msgpack: whatever a default is stored as must come back readable (a tuple became its characters)."""
    import argparse

    import msgpack

    from locust_plugin import options

    parser = argparse.ArgumentParser()
    parser.add_argument = _dropping_include_in_web_ui(parser.add_argument)  # Locust's parser takes it
    options.add_arguments(parser)
    parsed = parser.parse_args([])
    for option in options.OPTIONS:
        default = getattr(parsed, option.dest)
        shown = ",".join(map(str, default)) if isinstance(default, list | tuple) else str(default)
        if isinstance(default, bool):
            continue  # the form sends "true"/"false" for those
        from_form = type(default)(option.default if isinstance(default, str) else shown)
        from_master = msgpack.unpackb(msgpack.packb(default))
        for value in (from_form, from_master):
            assert options.read(argparse.Namespace(**{option.dest: value}), option.dest) == option.parse(
                option.default
            ), option.flag


def _dropping_include_in_web_ui(add):
    def add_argument(*args, include_in_web_ui=False, **kwargs):
        return add(*args, **kwargs)

    return add_argument
