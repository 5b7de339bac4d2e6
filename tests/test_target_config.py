"""Configuration: flags, TARGET_* env vars, validation, and the one-line exit-2 errors of the CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest

from target_server.__main__ import main
from target_server.config import Config
from target_server.config_sources import config_from_sources
from target_server.faults import Fault, FaultError, parse_fault
from target_server.options import OPTIONS, ConfigError
from tests.conftest import ROOT


def test_defaults_are_the_seeds():
    config = Config()
    assert (config.host, config.port) == ("127.0.0.1", 3000)
    assert (config.expansion, config.task_delay_ms, config.sync_work_ms) == (1, 20.0, 10.0)
    assert (config.lag_interval_ms, config.lag_smoothing, config.max_lag_ms) == (500.0, 1 / 3, 70.0)
    assert (config.max_sockets, config.log_interval_ms, config.reject_if_too_busy) == (256, 250.0, False)


def test_flags_win_over_env_and_env_over_defaults():
    env = {"TARGET_SYNC_WORK_MS": "15", "TARGET_PORT": "4000", "TARGET_REJECT_IF_TOO_BUSY": "yes"}
    config = config_from_sources(["--port", "5000", "--fault", "error:rate=0.25"], env)
    assert config.port == 5000
    assert config.sync_work_ms == 15.0
    assert config.reject_if_too_busy is True
    assert config.faults == (Fault("error", rate=0.25),)


def test_every_option_has_a_flag_and_an_env_var():
    for option in OPTIONS:
        assert option.flag == "--" + option.name.replace("_", "-")
        assert option.env == "TARGET_" + option.name.upper()
    env = {"TARGET_FAULT": "slow:delay_ms=300; outage:duration_s=2", "TARGET_QUIET": "1"}
    config = config_from_sources([], env)
    assert config.quiet is True
    assert [f.kind for f in config.faults] == ["slow", "outage"]
    assert config.faults[0].delay_ms == 300.0


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (["--port", "70000"], {}, "--port: must be an integer from 0 to 65535, got '70000'"),
        (["--task-delay-ms", "-1"], {}, "--task-delay-ms: must be a number from 0 to 60000, got '-1'"),
        (["--expansion", "1.5"], {}, "--expansion: must be an integer from 1 to 1000"),
        ([], {"TARGET_MAX_LAG_MS": "0"}, "TARGET_MAX_LAG_MS: must be a number > 0"),
        ([], {"TARGET_QUIET": "maybe"}, "TARGET_QUIET: must be a boolean"),
        (["--sync-work-ms", "nan"], {}, "--sync-work-ms: must be a number"),
        (["--fault", "boom"], {}, "--fault: unknown fault kind 'boom'"),
        (["--fault", "slow:speed=3"], {}, "--fault: slow takes key=value pairs with keys rate, duration_s"),
        (["--fault", "error:rate=2"], {}, "--fault: error rate must be a number from 0 to 1"),
        ([], {"TARGET_FAULT": "outage"}, "TARGET_FAULT: outage needs duration_s"),
    ],
)
def test_bad_values_name_the_option_and_what_is_allowed(argv, env, expected):
    with pytest.raises(ConfigError) as caught:
        config_from_sources(argv, env)
    assert str(caught.value).startswith(expected)


def test_construction_validates_too():
    with pytest.raises(ConfigError, match="backlog"):
        Config(backlog=-1)
    with pytest.raises(ConfigError, match="reject_if_too_busy"):
        Config(reject_if_too_busy="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="cannot be changed at run time"):
        Config().with_changes({"port": 1})
    assert Config().with_changes({"sync_work_ms": 20}).sync_work_ms == 20.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("error", Fault("error", rate=1.0, status=500)),
        ("error:rate=0.1,status=502,duration_s=30", Fault("error", rate=0.1, status=502, duration_s=30)),
        ("slow:rate=0.5,delay_ms=250", Fault("slow", rate=0.5, delay_ms=250)),
        ("slow", Fault("slow", delay_ms=1000)),
        ("reset:rate=0.2", Fault("reset", rate=0.2)),
        ("hang:duration_s=5", Fault("hang", duration_s=5)),
        ("outage:duration_s=10", Fault("outage", duration_s=10, status=503)),
    ],
)
def test_fault_flag_syntax(text, expected):
    assert parse_fault(text) == expected
    assert Fault.from_json(expected.to_json()) == expected


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "error", "status": 404},
        {"kind": "outage", "duration_s": 5, "rate": 0.5},
        {"kind": "hang", "delay_ms": 5},
        {"kind": "slow", "delay_ms": -5},
        {"kind": "reset", "duration_s": 0},
        {"kind": "error", "rate": "half"},
        ["error"],
    ],
)
def test_bad_fault_bodies_are_refused(bad):
    with pytest.raises(FaultError):
        Fault.from_json(bad)


def test_main_exits_2_with_one_line(capsys):
    assert main(["--backlog", "-5"]) == 2
    assert main(["--no-such-flag"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "target_server: error: --backlog: must be an integer from 0 to 65535, got '-5'",
        "target_server: error: unrecognized arguments: --no-such-flag",
    ]


@pytest.mark.parametrize(
    ("argv", "env", "needle"),
    [
        (["--port", "-1"], {}, "--port: must be an integer from 0 to 65535, got '-1'"),
        (["--fault", "meteor"], {}, "--fault: unknown fault kind 'meteor'"),
        ([], {"TARGET_SYNC_WORK_MS": "-10"}, "TARGET_SYNC_WORK_MS: must be a number from 0 to 10000"),
    ],
)
@pytest.mark.slow
def test_cli_bad_flags_exit_2_with_one_clear_line(argv, env, needle):
    result = subprocess.run(
        [sys.executable, "-m", "target_server", *argv],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]
    assert "Traceback" not in result.stderr
