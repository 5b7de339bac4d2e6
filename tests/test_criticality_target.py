"""The target's --priority-shedding: sheddable requests are refused at a lower lag than critical ones.

Unit tests with the lag injected (no sampler, no clock), the in-process app for the request path, the
admin knobs and the counters, the pin to the client's constants, and the comparison's flag;
tests/test_target_load.py runs a real target under overload.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from target_server.app import create_app, state_of
from target_server.busy import shed_probability
from target_server.config import Config
from target_server.config_sources import config_from_sources
from target_server.criticality import (
    CRITICAL,
    DEFAULT,
    ENVIRON_KEY,
    HEADER,
    LEVELS,
    SHEDDABLE,
    criticality_of,
    shed_chance,
    sheddable_lag,
)
from target_server.guard import InputError
from target_server.options import ConfigError

LOOPBACK = {"REMOTE_ADDR": "127.0.0.1"}


# -- the contract with the client ----------------------------------------------------------------------


def test_the_header_and_its_values_are_the_agreed_ones():
    """The contract with the client side (mitigations/criticality.py): one header, two values, no header
    is critical. The target keeps its own copy (it must not import the client library); this pins it."""
    assert HEADER == "Hammerlab-Criticality"
    assert ENVIRON_KEY == "HTTP_HAMMERLAB_CRITICALITY"
    assert LEVELS == ("critical", "sheddable") and (CRITICAL, SHEDDABLE) == LEVELS
    assert DEFAULT == "critical"


def test_the_client_sends_the_same_header_and_values():
    """The client's copy (mitigations/criticality.py): the same header name, the same two values, and no
    header read as critical on both sides."""
    from mitigations import criticality as client

    assert client.HEADER == HEADER
    assert (client.CRITICAL, client.SHEDDABLE) == (CRITICAL, SHEDDABLE) and client.CRITICALITIES == LEVELS
    assert client.criticality_of({}) == criticality_of({}) == DEFAULT
    for value in LEVELS:
        assert client.criticality_of({HEADER: value}) == criticality_of({ENVIRON_KEY: value}) == value


# -- reading the header ----------------------------------------------------------------------------------


def test_no_header_is_critical_and_both_values_are_read_in_any_case():
    assert criticality_of({}) == CRITICAL
    assert criticality_of({ENVIRON_KEY: "sheddable"}) == SHEDDABLE
    assert criticality_of({ENVIRON_KEY: " Sheddable "}) == SHEDDABLE
    assert criticality_of({ENVIRON_KEY: "CRITICAL"}) == CRITICAL


@pytest.mark.parametrize("value", ["", "urgent", "critical, sheddable", "sheddable_plus", "1", "x" * 500])
def test_any_other_value_is_refused_naming_it_and_what_is_allowed(value):
    with pytest.raises(InputError) as caught:
        criticality_of({ENVIRON_KEY: value})
    message = str(caught.value)
    assert message.startswith("Hammerlab-Criticality: must be critical or sheddable (no header: critical)")
    assert repr(value[:40]).rstrip("'") in message and len(message) < 200 and "\n" not in message


# -- the shedding decision, with the lag injected ------------------------------------------------------------


def test_sheddable_requests_are_shed_from_half_the_max_lag_by_default():
    """max_lag 70 ms: sheddable from 35 ms (all of them at 70), critical from 70 ms (all at 140)."""
    assert sheddable_lag(70.0, None) == 35.0 and sheddable_lag(70.0, 20.0) == 20.0
    chances = {
        lag: (shed_chance(SHEDDABLE, lag, 70.0, None, True), shed_chance(CRITICAL, lag, 70.0, None, True))
        for lag in (0.0, 35.0, 52.5, 70.0, 105.0, 140.0, 500.0)
    }
    assert chances == {
        0.0: (0.0, 0.0),
        35.0: (0.0, 0.0),
        52.5: (0.5, 0.0),
        70.0: (1.0, 0.0),
        105.0: (1.0, 0.5),
        140.0: (1.0, 1.0),
        500.0: (1.0, 1.0),
    }


def test_without_priority_shedding_the_header_changes_nothing():
    for lag in (0.0, 52.5, 105.0, 200.0):
        assert shed_chance(SHEDDABLE, lag, 70.0, 10.0, False) == shed_probability(lag, 70.0)
        assert shed_chance(CRITICAL, lag, 70.0, 10.0, False) == shed_probability(lag, 70.0)


@settings(max_examples=200, deadline=None)
@given(
    lag=st.floats(0, 10_000),
    max_lag=st.floats(0.01, 60_000),
    share=st.one_of(st.none(), st.floats(0.0001, 1.0)),
)
def test_a_sheddable_request_is_never_less_likely_to_be_shed_than_a_critical_one(lag, max_lag, share):
    sheddable_ms = None if share is None else max_lag * share
    shed = shed_chance(SHEDDABLE, lag, max_lag, sheddable_ms, True)
    kept = shed_chance(CRITICAL, lag, max_lag, sheddable_ms, True)
    assert 0.0 <= kept <= shed <= 1.0


# -- the config --------------------------------------------------------------------------------------------


def test_the_options_default_off_and_come_from_flags_and_the_environment():
    config = Config()
    assert (config.priority_shedding, config.sheddable_lag_ms) == (False, None)
    config = config_from_sources(["--priority-shedding", "--sheddable-lag-ms", "20"], {})
    assert (config.priority_shedding, config.sheddable_lag_ms) == (True, 20.0)
    env = {"TARGET_PRIORITY_SHEDDING": "on", "TARGET_SHEDDABLE_LAG_MS": ""}
    assert (
        config_from_sources([], env).priority_shedding,
        config_from_sources([], env).sheddable_lag_ms,
    ) == (
        True,
        None,
    )


def test_a_sheddable_threshold_above_the_critical_one_is_refused_in_one_line():
    with pytest.raises(ConfigError) as caught:
        config_from_sources(["--sheddable-lag-ms", "80"], {})
    assert str(caught.value) == (
        "--sheddable-lag-ms: must be at most max_lag_ms (70), so that sheddable requests are shed first; "
        "got 80"
    )
    Config(max_lag_ms=100, sheddable_lag_ms=100)  # equal is allowed: the same threshold for both


# -- the request path, in process ------------------------------------------------------------------------


def _app(**values):
    # lag_interval 60 s: the sampler never overwrites the lag the test sets
    return create_app(
        Config(
            quiet=True,
            task_delay_ms=0,
            sync_work_ms=0,
            lag_interval_ms=60_000,
            status_port=-1,
            seed=7,
            **values,
        )
    )


def _statuses(app, lag_ms: float, header: str | None, n: int = 20) -> list[int]:
    state_of(app).lag.lag_ms = lag_ms
    headers = {} if header is None else {HEADER: header}
    return [app.test_client().get("/doWork", headers=headers).status_code for _ in range(n)]


def test_at_the_max_lag_sheddable_requests_are_shed_and_critical_ones_served():
    app = _app(priority_shedding=True)
    assert _statuses(app, 70.0, "sheddable") == [503] * 20
    assert _statuses(app, 70.0, "critical") == [200] * 20
    assert _statuses(app, 70.0, None) == [200] * 20  # no header: critical
    assert _statuses(app, 20.0, "sheddable") == [200] * 20  # below 35 ms nobody is shed
    assert _statuses(app, 200.0, "critical") == [503] * 20  # past 2 x max_lag, critical ones too
    stats = app.test_client().get("/stats").get_json()
    assert stats["by_criticality_total"] == {
        "critical": {"requests": 60, "completed": 40, "rejected": 20},
        "sheddable": {"requests": 40, "completed": 20, "rejected": 20},
    }
    assert (stats["requests_total"], stats["completed_total"], stats["rejected_total"]) == (100, 60, 40)
    assert (stats["sheddable_lag_ms"], stats["sheddable_shed_probability"]) == (35.0, 1.0)


def test_plain_shedding_treats_both_alike_and_a_bad_header_is_a_400_counted_in_neither():
    app = _app(reject_if_too_busy=True)
    assert _statuses(app, 70.0, "sheddable") == [200] * 20  # toobusy: never at or below max_lag
    response = app.test_client().get("/doWork", headers={HEADER: "urgent"})
    assert response.status_code == 400
    assert response.get_json()["error"] == (
        "Hammerlab-Criticality: must be critical or sheddable (no header: critical), got 'urgent'"
    )
    stats = app.test_client().get("/stats").get_json()
    assert stats["bad_requests_total"] == 1 and stats["requests_total"] == 21
    assert stats["by_criticality_total"]["sheddable"] == {"requests": 20, "completed": 20, "rejected": 0}
    assert stats["by_criticality_total"]["critical"] == {"requests": 0, "completed": 0, "rejected": 0}


def test_the_admin_knobs_turn_priority_shedding_on_and_refuse_a_threshold_above_the_max():
    app = _app()
    client = app.test_client()
    assert _statuses(app, 70.0, "sheddable", 5) == [200] * 5  # shedding off
    answer = client.post(
        "/admin/config", json={"priority_shedding": True, "sheddable_lag_ms": 10}, environ_base=LOOPBACK
    )
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["config"]["sheddable_lag_ms"] == 10.0
    assert _statuses(app, 20.0, "sheddable", 5) == [503] * 5  # 2 x 10 ms: all shed
    assert _statuses(app, 20.0, "critical", 5) == [200] * 5
    bad = client.post("/admin/config", json={"sheddable_lag_ms": 90}, environ_base=LOOPBACK)
    assert bad.status_code == 400
    assert bad.get_json()["error"].startswith("sheddable_lag_ms: must be at most max_lag_ms (70)")


def test_the_counters_are_in_metrics_with_a_criticality_label():
    app = _app(priority_shedding=True)
    _statuses(app, 70.0, "sheddable", 3)
    _statuses(app, 70.0, "critical", 2)
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'target_rejected_by_criticality_total{criticality="sheddable"} 3.0' in text
    assert 'target_completed_by_criticality_total{criticality="critical"} 2.0' in text
    assert 'target_requests_by_criticality_total{criticality="critical"} 2.0' in text
    assert "target_sheddable_shed_probability 1.0" in text
    assert "target_requests_total 5.0" in text  # the existing counters are kept


# -- the comparison starts its embedded target with it ----------------------------------------------------


def test_the_comparison_starts_its_embedded_target_with_priority_shedding_after_the_probe(tmp_path):
    """`python -m comparison --priority-shedding`: the classes' target gets the flag (C was measured, or
    given, on the plain one), and run.json's target line says so."""
    import io

    from comparison.__main__ import parse_config
    from comparison.run_record import RunRecord
    from comparison.runner import measure_and_plan
    from comparison.signals import SignalGuard
    from comparison.target import EmbeddedTarget

    config = parse_config(["--scenario", "cliff", "--clients", "AdaptiveClient", "--capacity", "80",
                           "--priority-shedding"])  # fmt: skip
    assert config.priority_shedding
    embedded = EmbeddedTarget()
    record = RunRecord("cliff", ["AdaptiveClient"], "", "", {}, "embedded")
    measure_and_plan(config, embedded, tmp_path, record, io.StringIO(), SignalGuard())
    assert embedded.extra_args == ("--priority-shedding",)
    assert record.target == "embedded --priority-shedding"
    assert not parse_config(["--capacity", "80"]).priority_shedding


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--priority-shedding", "--host", "http://127.0.0.1:3000"],
         "--priority-shedding: is a flag of the embedded single-process target; leave out --host (start your "
         "target with --priority-shedding instead)"),
        (["--priority-shedding", "--target-workers", "2"],
         "--priority-shedding: is a flag of the embedded single-process target; leave out --target-workers"),
    ],
)  # fmt: skip
def test_the_comparison_refuses_priority_shedding_for_a_target_it_does_not_start(argv, message, capsys):
    from comparison.__main__ import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_an_expired_override_does_not_refuse_a_later_change():
    """A change is checked against the config in force, not against an override that has expired: after
    max_lag_ms=20 for 1 s has run out (max_lag_ms is 70 again), sheddable_lag_ms=50 is allowed.
    No request read the config in between, so nothing else has pruned the stale override."""
    from target_server.state import TargetState

    now = [1000.0]
    state = TargetState(Config(quiet=True), wall=lambda: now[0])
    state.set_overrides({"max_lag_ms": 20}, 1.0)
    assert state.config.max_lag_ms == 20.0
    now[0] += 2.0
    assert state.set_overrides({"sheddable_lag_ms": 50}, None).sheddable_lag_ms == 50.0
    assert state.config.max_lag_ms == 70.0
    with pytest.raises(ConfigError, match="sheddable_lag_ms: must be at most max_lag_ms"):
        state.set_overrides({"max_lag_ms": 40}, None)  # the live override still counts
