"""Client options: every bad value is one readable line, every good one parses to what the seed meant."""

import subprocess
from types import SimpleNamespace

import pytest

from locust_plugin import options
from locust_plugin.options import OptionError
from tests.locust_run import ROOT, locust_command


@pytest.mark.parametrize(
    ("dest", "raw", "expected"),
    [
        ("launch_rate", "200", 200.0),
        ("max_concurrent", 16, 16),
        ("throttle_mode", "queue", "queue"),
        ("keep_alive", "true", True),
        ("keep_alive", False, False),
        ("breaker_window", "10s", ("time", 10.0)),
        ("breaker_window", "100", ("count", 100.0)),
        ("failure_rate_threshold", "50", 50.0),
        ("slow_call_ms", "0", 0),
        ("retry_methods", "get, put,GET", ("GET", "PUT")),
        ("retry_methods", "*", ("*",)),
        ("min_wire_share", "0", 0.0),
        ("count_429", "false", False),
        ("half_open_max_wait_ms", "0", 0),
    ],
)
def test_good_values_parse(dest, raw, expected):
    assert options.read(SimpleNamespace(**{dest: raw}), dest) == expected


@pytest.mark.parametrize(
    ("dest", "raw", "fragment"),
    [
        ("launch_rate", "0", "--launch-rate: '0' must be from 0.01 to 100,000 requests/s per user"),
        ("launch_rate", "fast", "--launch-rate: 'fast' is not a number"),
        ("max_concurrent", "-3", "--max-concurrent: '-3' must be from 1 to 10,000"),
        ("throttle_mode", "drop", "--throttle-mode: 'drop' is not one of cancel, queue"),
        ("keep_alive", "maybe", "--keep-alive: 'maybe' is not true or false"),
        ("breaker_window", "10m", "use seconds from 0.1s to 3,600s, or a call count from 1 to 100,000"),
        ("failure_rate_threshold", "150", "must be from 0.01 to 100 %"),
        ("http_client", "curl", "is not one of requests, fast"),
        ("retry_methods", "GET,PO ST", "--retry-methods: 'GET,PO ST' is not a list of HTTP methods"),
        ("retry_methods", ",", "is not a list of HTTP methods"),
        ("min_wire_share", "100", "--min-wire-share: '100' must be from 1 to 99 % of the deadline"),
        ("min_wire_share", "-1", "must be from 1 to 99 % of the deadline, or 0 = off"),
    ],
)
def test_bad_values_name_the_option_and_what_is_allowed(dest, raw, fragment):
    with pytest.raises(OptionError) as caught:
        options.read(SimpleNamespace(**{dest: raw}), dest)
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_values_fall_back_to_the_seed_defaults():
    assert options.read(None, "launch_rate") == 100.0
    assert options.read(SimpleNamespace(), "recent_error_delay_ms") == 2000
    assert options.read(SimpleNamespace(), "keep_alive") is False


def run_locust(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        locust_command(*args, seconds=2),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-concurrent", "0", "ThrottledClient"], "--max-concurrent: '0' must be from 1 to 10,000"),
        (["--throttle-mode", "drop", "ThrottledClient"], "'drop' is not one of cancel, queue"),
        (
            ["--host", "localhost:3000", "BreakerClient"],
            "is not a URL Hammerlab sends to: write http:// or https://",
        ),
    ],
)
@pytest.mark.slow
def test_locust_refuses_a_bad_value_with_one_line_and_exit_2(args, message):
    result = run_locust(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_the_blame_and_retry_options_reach_the_pipeline():
    from locust_plugin.pipelines import build_pipeline
    from mitigations.core import SYSTEM_CLOCK

    parsed = SimpleNamespace(
        retry_methods="GET,POST",
        min_wire_share="25",
        count_429="false",
        half_open_max_wait_ms="1500",
        breaker_mode="rate",
    )
    built = build_pipeline(("retry", "breaker", "timeout"), parsed, "http://127.0.0.1:9", SYSTEM_CLOCK)
    assert built.policies["retry"].config.methods == {"GET", "POST"}
    assert built.policies["breaker"].config.half_open_max_wait == 1.5
    assert built.pipeline.min_wire_share == 0.25 and built.pipeline.transport.config.count_429 is False
    host = "http://127.0.0.1:9"
    defaults = build_pipeline(("naive-retry", "breaker"), None, host, SYSTEM_CLOCK)
    idempotent = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"}
    assert defaults.policies["naive-retry"].config.methods == idempotent
    assert defaults.policies["breaker"].config.half_open_max_wait == 5.0
    assert defaults.pipeline.min_wire_share == 0.5 and defaults.pipeline.transport.config.count_429 is True
    anything = build_pipeline(("retry",), SimpleNamespace(retry_methods="*"), host, SYSTEM_CLOCK)
    assert anything.policies["retry"].config.methods is None


def test_the_knee_options_reach_the_adaptive_limit():
    from locust_plugin.pipelines import build_pipeline
    from mitigations.adaptive_knee import Knee
    from mitigations.core import SYSTEM_CLOCK

    parsed = SimpleNamespace(
        adaptive_algorithm="knee",
        adaptive_tolerance="25",
        adaptive_probe_interval_s="60",
        slo_ms="800",
        adaptive_dither="10",
        adaptive_fleet_size="4",
        adaptive_elasticity="7.5",
    )
    built = build_pipeline(("adaptive",), parsed, "http://127.0.0.1:9", SYSTEM_CLOCK)
    algorithm = built.policies["adaptive"].algorithm
    assert isinstance(algorithm, Knee)
    assert algorithm.config.tolerance == 0.25 and algorithm.config.probe_interval == 60.0
    assert algorithm.config.dither == 0.1 and algorithm.config.fleet_size == 4
    assert algorithm.config.elasticity == pytest.approx(0.075)
    assert algorithm.config.slo_target == 0.4  # the ceiling: --adaptive-slo-share 50 % of --slo-ms
