"""Fleet and distributed plans without running anything: how the offered load splits over workers,
the fairness index, and the option checks."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from comparison.__main__ import main, parse_config
from comparison.config import ConfigError, RunConfig, build_plan
from comparison.external import ExternalWorkers
from comparison.locust_run import distributed_args


@pytest.mark.parametrize("scenario", ["healthy", "cliff", "burst", "outage"])
def test_workers_split_the_same_offered_load(scenario):
    duration = 30.0
    one = build_plan(RunConfig(scenario=scenario, duration_s=duration), 90.0)
    four = build_plan(RunConfig(scenario=scenario, duration_s=duration, workers=4), 90.0)
    assert (one.workers, four.workers) == (1, 4)
    assert four.users == 4 * one.users
    assert four.launch_rate == pytest.approx(one.launch_rate / 4)
    assert four.offered_rps == pytest.approx(one.offered_rps)
    for t in (0.0, 3.0, 7.5, 9.9, 12.0, 29.0):
        assert four.offered_at(t) == pytest.approx(one.offered_at(t))
    if scenario == "burst":
        assert (four.burst.quiet_users, four.burst.peak_users) == (4, 24)


def test_distributed_args_name_one_loopback_port():
    assert distributed_args(1) == []
    args = distributed_args(3, port=45678)
    assert args[args.index("--processes") + 1] == "3"
    assert args[args.index("--master-bind-host") + 1] == "127.0.0.1"
    assert args[args.index("--master-bind-port") + 1] == args[args.index("--master-port") + 1] == "45678"
    picked = distributed_args(2)
    assert 0 < int(picked[picked.index("--master-port") + 1]) < 65536


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workers", "0"], "--workers: must be a whole number from 1 to 16, got 0"),
        (["--workers", "17"], "--workers: must be a whole number from 1 to 16, got 17"),
        (["--workers", "two"], "argument --workers: 'two' is not a whole number"),
        (["--workers", "1.5"], "argument --workers: '1.5' is not a whole number"),
    ],
)
def test_bad_workers_exit_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_workers_reach_the_config():
    assert parse_config(["--workers", "3"]).workers == 3
    with pytest.raises(ConfigError):
        RunConfig(workers=True)  # type: ignore[arg-type]


def test_jain_index():
    from comparison.fleet import jain

    assert jain([5.0, 5.0, 5.0, 5.0]) == pytest.approx(1.0)
    assert jain([8.0, 0.0, 0.0, 0.0]) == pytest.approx(0.25)  # one takes everything: 1/n
    assert jain([1.0, 2.0, 3.0]) == pytest.approx(36 / 42)
    assert jain([]) is None and jain([0.0, 0.0]) is None


def test_fleet_scenario_defaults_to_four_instances_and_needs_two():
    config = parse_config(["--scenario", "fleet"])
    assert config.workers == 4
    plan = build_plan(config, 90.0)
    assert plan.offered_rps == pytest.approx(180.0) and plan.users == 4
    assert plan.launch_rate == pytest.approx(45.0)
    assert parse_config(["--scenario", "cliff"]).workers == 1
    with pytest.raises(ConfigError, match="--workers: the fleet scenario needs at least 2 client instances"):
        parse_config(["--scenario", "fleet", "--workers", "1"])


def test_each_instance_is_named_by_its_host_and_a_gate_can_hold_the_fleet_to_jain():
    from comparison.fleet import worker_host
    from comparison.gates import parse_gate

    assert worker_host("host-b_" + "0123456789abcdef" * 2) == "host-b"
    assert worker_host("ip-10-0-0-5.ec2_internal_" + "f" * 32) == "ip-10-0-0-5.ec2_internal"  # _ in a name
    assert worker_host("w1") == "w1" and worker_host("local") == "local"  # not a Locust worker id
    parse_gate("AdaptiveClient: jain_index >= 0.9")  # a numeric summary column


def test_external_workers_reach_the_config_as_client_instances():
    config = parse_config(["--external-workers", "3", "--host", "http://127.0.0.1:3000"])
    assert config.workers == 3 and config.external is not None
    assert config.external.master_args() == [
        "--master", "--expect-workers", "3", "--expect-workers-max-wait", "60",
        "--master-bind-host", "*", "--master-bind-port", "5557",
    ]  # fmt: skip
    assert build_plan(config, 90.0).workers == 3
    line = config.external.worker_command("locustfiles", allow_remote=True)
    assert line == (
        "while :; do locust -f locustfiles --worker --master-host MASTER --master-port 5557 --allow-remote; "
        "sleep 1; done"
    )


# -- the master's bind host: every spelling accepted is one Locust's ZeroMQ can bind ---------------------

BIND_TRICKS = ["*", "localhost", "127.1", "0x7f.0.0.1", "2130706433", "0177.0.0.1", "", " ", "[]", "[*]"]


@st.composite
def bind_hosts(draw) -> str:
    """An IP address, as typed: bare, bracketed, half-bracketed, doubly bracketed, with a zone or spaces."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.sampled_from(BIND_TRICKS))
    address = str(draw(st.ip_addresses()))
    if ":" in address and draw(st.booleans()):
        address += draw(st.sampled_from(("%lo", "%1", "%")))
    shape = draw(st.sampled_from(("{}", "[{}]", "[{}", "{}]", "[[{}]]", " {}", "{} ")))
    return shape.format(address)


@settings(max_examples=300, deadline=None)
@given(bind_hosts())
def test_a_bind_host_is_refused_in_one_line_or_handed_to_locust_in_the_form_zeromq_binds(text):
    """Seam external workers x Locust's ZeroMQ: `tcp://HOST:PORT` binds an IPv6 address only in brackets
    (`tcp://::1:5557` and `tcp://[::1:5557` fail inside the master, after the run began), and the workers
    connect to the same spelling."""
    try:
        external = ExternalWorkers(2, bind_host=text)
    except ConfigError as error:
        assert "\n" not in str(error) and "--master-bind-host" in str(error)
        return
    args = external.master_args()
    host = args[args.index("--master-bind-host") + 1]
    if host == "*":
        assert text == "*"
        return
    typed = ipaddress.ip_address(text.strip().strip("[]"))
    if typed.version == 4:
        assert host == str(typed)
    else:
        assert host == f"[{typed}]" and "%" not in host
    command = external.worker_command("locustfiles", allow_remote=False).replace("'", "")
    assert f"--master-host {host} " in command
