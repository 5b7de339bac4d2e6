"""Bad input on the client side never runs away (issue 10, findings 1, 8, 9): every Hammerlab option of
Locust and every argument of `python -m comparison` that is out of range, not plain ASCII digits,
NaN, infinite, tiny, or that would replace what the comparison sets, ends in exit 2 with one line that
names the option, and no traceback, within 5 s.

Most cases go through the real parsers in-process (Locust's argparse with the plugin's options, and the
comparison's `main`); a few run real processes to prove the exit code and the single line end to end.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from comparison.__main__ import main as comparison_main
from comparison.inputs import RESERVED_LONG, RESERVED_SHORT, path_problem, reserved_options
from locust_plugin import values
from locust_plugin.options import OPTIONS
from tests.locust_run import ROOT, locust_command

HANG_S = 5.0
FULL_WIDTH_10 = "\uff11\uff10"  # "10" in full-width digits: int() and float() accept it
NOT_PLAIN_NUMBERS = [
    "nan",
    "NaN",
    "inf",
    "-inf",
    "1e400",
    "1_0",
    FULL_WIDTH_10,
    "0x10",
    "1,5",
    "abc",
    "",
    "1 0",
]
RANGED = [
    option
    for option in OPTIONS
    if option.allowed and option.flag not in ("--breaker-window", "--criticality-mix")
]


# -- Locust's real parser, with the plugin's options -------------------------------------------------------


@pytest.fixture(scope="module")
def locust_parser() -> argparse.ArgumentParser:
    from locust.argument_parser import get_parser

    import locust_plugin  # noqa: F401  (registers the options on Locust's parser event)

    return get_parser()


@contextlib.contextmanager
def one_line_exit_2(started: float | None = None) -> Iterator[io.StringIO]:
    """Expects SystemExit(2) with exactly one line on stderr and no traceback, within HANG_S."""
    started = time.monotonic() if started is None else started
    err = io.StringIO()
    with pytest.raises(SystemExit) as caught, contextlib.redirect_stderr(err):
        yield err
    assert caught.value.code == 2
    text = err.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n"), text
    assert "Traceback" not in text
    assert time.monotonic() - started < HANG_S


def parse_locust(parser: argparse.ArgumentParser, *args: str) -> argparse.Namespace:
    return parser.parse_args(["-f", "locustfiles", *args])


def out_of_range(option) -> list[str]:
    """Just outside each end of the option's range, and a tiny positive value."""
    low, high = _bounds(option)
    if isinstance(low, int) and isinstance(high, int):
        below = [] if low == 0 or (low == 1 and _zero_allowed(option)) else [str(low - 1)]
        return [*below, str(high + 1), "-1", "1.5", "1e3"]
    zero = [] if _zero_allowed(option) else ["0"]
    return [repr(low / 2), repr(high * 1.01), *zero, "-1", "1e-300"]


def _bounds(option) -> tuple[float, float]:
    return option.parse.low, option.parse.high


def _zero_allowed(option) -> bool:
    return getattr(option.parse, "zero", None) is not None


PLUGIN_CASES = [
    pytest.param(option.flag, value, id=f"{option.flag}={value!r}")
    for option in RANGED
    for value in [*NOT_PLAIN_NUMBERS, *out_of_range(option)]
] + [
    pytest.param("--breaker-window", value, id=f"--breaker-window={value!r}")
    for value in ["0s", "1e-300s", "nans", "infs", "10m", "0", "100001", "1_0s", "3601s", FULL_WIDTH_10]
] + [
    pytest.param("--criticality-mix", value, id=f"--criticality-mix={value!r}")
    for value in ["critical=1.5", "critical=-0.1", "critical=nan", "critical=inf", "critical=0_3",
                  f"critical={FULL_WIDTH_10}", "critical=", "sheddable=0.3", "0.3", "critical:0.3", "on"]
] + [
    pytest.param("--path", value, id=f"--path={value!r}")
    for value in ["doWork", "@evil.example/x", "http://evil.example/", "//evil.example/x", "/a b", "/\\evil",
                  "/x#frag", "/caf\u00e9", "/" + "a" * 2001, "/\x00"]
] + [
    pytest.param(flag, value, id=f"{flag}={value!r}")
    for flag, value in [("--arrival", "sometimes"), ("--http-client", "curl"), ("--keep-alive", "maybe"),
                        ("--throttle-mode", "drop"), ("--server-sample-ms", "3_00"),
                        ("--server-sample-ms", "\uff13\uff10\uff10"), ("--server-sample-ms", "99")]
]  # fmt: skip


@pytest.mark.parametrize(("flag", "value"), PLUGIN_CASES)
def test_a_bad_plugin_value_is_one_line_and_exit_2(locust_parser, flag, value):
    with one_line_exit_2() as err:
        parse_locust(locust_parser, flag, value)
    assert f"argument {flag}:" in err.getvalue()


@pytest.mark.parametrize("option", RANGED, ids=lambda option: option.flag)
def test_each_end_of_every_range_is_accepted(locust_parser, option):
    low, high = _bounds(option)
    for value in (low, high):
        parsed = parse_locust(locust_parser, option.flag, str(value))
        assert getattr(parsed, option.dest) == value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(RANGED), value=st.floats(allow_nan=True, allow_infinity=True))
def test_any_number_outside_the_range_is_refused_and_any_inside_kept(locust_parser, option, value):
    low, high = _bounds(option)
    whole = option.parse.__name__ == "whole"
    text = str(int(value)) if whole and math.isfinite(value) and value.is_integer() else repr(value)
    inside = math.isfinite(value) and (low <= value <= high or (value == 0 and _zero_allowed(option)))
    if inside and (not whole or value.is_integer()):
        assert getattr(parse_locust(locust_parser, option.flag, text), option.dest) == value
    else:
        with one_line_exit_2():
            parse_locust(locust_parser, option.flag, text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
def test_the_comparison_and_the_plugin_agree_on_what_a_path_is(text):
    try:
        values.path(text)
        plugin_ok = True
    except ValueError:
        plugin_ok = False
    assert plugin_ok == (path_problem(text) is None), text


def run_all(commands: Sequence[Sequence[str]], timeout: float = HANG_S) -> list[tuple[int | None, str, str]]:
    """Start every command at once; each gets `timeout` seconds, then SIGKILL (a runaway ignores TERM)."""
    procs = [
        subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for command in commands
    ]
    deadline = time.monotonic() + timeout
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
            results.append((proc.returncode, out, err))
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            results.append((None, out, err))  # None: still running after the timeout
    return results


REAL_LOCUST_CASES = [
    ["--launch-rate", "1000000"],  # was: 0 requests, -t ignored, 1.25 GB, SIGTERM ignored
    ["--launch-rate", "inf"],  # was: thousands of ZeroDivisionError tracebacks
    ["--launch-rate", "1e-300"],  # was: accepted, and nothing sent
    ["--max-concurrent", "1_000"],
    ["--path", "@evil.example/x"],  # was: every request to another host
    ["--server-sample-ms", "\uff13\uff10\uff10"],
]


@pytest.mark.slow
def test_real_locust_processes_refuse_at_once_with_one_line(start_target):
    target = start_target()
    commands = [
        locust_command(*args, "HammerClient", seconds=2, host=target.url) for args in REAL_LOCUST_CASES
    ]
    # started together on 2 shared cores: each gets 20 s (a runaway never exits; a refusal takes ~1 s)
    for args, (code, out, err) in zip(REAL_LOCUST_CASES, run_all(commands, timeout=20), strict=True):
        assert code == 2, (args, code, err[-500:])
        assert err.count("\n") == 1 and f"argument {args[0]}:" in err, (args, err)
        assert "Traceback" not in out + err
    assert target.stats()["requests_total"] == 0


# -- python -m comparison ----------------------------------------------------------------------------------


def comparison_exit(argv: Sequence[str], capsys) -> str:
    started = time.monotonic()
    code = comparison_main(list(argv))
    err = capsys.readouterr().err
    assert code == 2, (argv, err)
    assert err.count("\n") == 1 and err.startswith("python -m comparison: error: "), err
    assert "Traceback" not in err
    assert time.monotonic() - started < HANG_S
    return err


COMPARISON_NUMBERS = {
    "--duration": ["4", "601", "5.5"],
    "--capacity": ["0", "0.5", "5001"],
    "--rate-multiplier": ["0.01", "21", "1e-300"],
    "--launch-rate": ["0", "0.5", "5001"],
    "--probe-seconds": ["0", "31", "0.5"],
}
EXTERNAL = ["--external-workers", "2", "--host", "http://127.0.0.1:3000", "--capacity", "50"]
COMPARISON_CASES = [
    pytest.param([flag, value], flag, id=f"{flag}={value!r}")
    for flag, bad in COMPARISON_NUMBERS.items()
    for value in [*NOT_PLAIN_NUMBERS[:-1], "1e309", *bad]  # "1 0" is two arguments to argparse
    if value
] + [
    pytest.param(["--host", host], "--host", id=f"--host={host!r}")
    for host in ["http://[::1", "http://a b", "localhost:3000", "ftp://127.0.0.1", "http://", "http://u:p@h",
                 "http://127.0.0.1:99999", "http://127.0.0.1:x", "http://127.0.0.1/path", "http://h?q=1",
                 "http://\u0127ost", "http://h\x00"]
] + [
    pytest.param(["--results-dir", path], "--results-dir", id=f"--results-dir={path!r}")
    for path in ["/proc/forbidden", "/dev/null/x", "/etc/passwd", "/proc/1/nope/deeper", "/sys/x"]
] + [
    pytest.param(["--clients", clients], "--clients", id=f"--clients={clients!r}")
    for clients in [",", "A,A", "1Client", "Hammer Client", "\uff28ammer"]
] + [
    pytest.param(["--", *args], "after --", id=f"-- {' '.join(args)}")
    for args in [["-u5"], ["-u", "5"], ["-t1s"], ["--run-tim", "1s"], ["--run-t=1s"], ["-Hhttp://x"],
                 ["--ho", "http://x"], ["--csv", "x"], ["--csv-f"], ["--htm", "x.html"], ["--headl"],
                 ["--users=9"], ["--spawn", "9"], ["-r9"], ["-f", "x.py"], ["--launch", "5"], ["-l"],
                 ["--max-concurrent", "8", "-u3"], ["--conf", "x.conf"], ["--processes", "4"]]
] + [
    pytest.param(["--", "--path", path], "--path", id=f"-- --path {path!r}")
    for path in ["@otherhost/x", "http://host/", "//host/x", "x", "/a b"]
] + [pytest.param(["--", "--pat=@h/x"], "--path", id="-- --pat=@h/x")] + [
    pytest.param([*EXTERNAL, *args], named, id=f"external {' '.join(args)}")
    for args, named in [(["--external-workers", "0"], "--external-workers"),
                        (["--external-workers", "129"], "--external-workers"),
                        (["--external-workers", "x"], "--external-workers"),
                        (["--external-workers", "2", "--workers", "2"], "--external-workers"),
                        (["--master-bind-host", "somehost"], "--master-bind-host"),
                        (["--master-bind-host", "10.0.0.1:5557"], "--master-bind-host"),
                        (["--master-bind-port", "0"], "--master-bind-port"),
                        (["--master-bind-port", "65536"], "--master-bind-port"),
                        (["--external-workers-wait", "0"], "--external-workers-wait"),
                        (["--external-workers-wait", "601"], "--external-workers-wait"),
                        # TEST-NET-1, not this machine's: refused by a local bind(), nothing connects or sends
                        (["--master-bind-host", "192.0.2.1"], "--master-bind-host")]
] + [
    pytest.param(["--external-workers", "2"], "give --host", id="external without --host"),
    pytest.param(["--master-bind-port", "5557"], "only with --external-workers", id="bind port alone"),
    pytest.param(["--external-workers-wait", "5"], "only with --external-workers", id="wait alone"),
]  # fmt: skip


def with_results_dir(argv: Sequence[str], folder: Path) -> list[str]:
    """`--results-dir folder` among the runner's own options (before any `--`)."""
    cut = argv.index("--") if "--" in argv else len(argv)
    return [*argv[:cut], "--results-dir", str(folder), *argv[cut:]]


@pytest.mark.parametrize(("argv", "named"), COMPARISON_CASES)
def test_a_bad_comparison_argument_is_one_line_and_exit_2(argv, named, capsys, tmp_path):
    if "--results-dir" not in argv:
        argv = with_results_dir(argv, tmp_path)
    assert named in comparison_exit(argv, capsys)
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


def reserved_dests(parser: argparse.ArgumentParser) -> dict[str, object]:
    """dest -> default for every reserved option of Locust's parser."""
    found = {}
    for action in parser._actions:
        if any(s in RESERVED_LONG or s in RESERVED_SHORT for s in action.option_strings):
            found[action.dest] = action.default
    return found


EXITING = {"--help", "-h", "--version", "-V"}  # argparse prints and exits: nothing runs


def spelling(option: str, cut: int, glue: str, value: str) -> list[str]:
    """One way to write `option value`: abbreviated to `cut` characters, glued, with = or apart."""
    if option.startswith("--"):
        name = option[: max(3, min(cut, len(option)))]
        return [f"{name}={value}"] if glue == "=" else [name, value] if glue == " " else [name]
    return [f"{option}{value}"] if glue == "=" else [option, value] if glue == " " else [option]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    option=st.sampled_from(sorted((RESERVED_LONG | RESERVED_SHORT) - EXITING)),
    cut=st.integers(3, 25),
    glue=st.sampled_from(["=", " ", ""]),
    value=st.sampled_from(["5", "1s", "http://127.0.0.1:9", "x"]),
    before=st.sampled_from([[], ["--max-concurrent", "8"], ["--keep-alive", "true"]]),
)
def test_whatever_locust_would_take_as_a_reserved_option_the_comparison_refuses(
    locust_parser, option, cut, glue, value, before
):
    tokens = [*before, *spelling(option, cut, glue, value)]
    defaults = reserved_dests(locust_parser)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parsed = parse_locust(locust_parser, *tokens)
    except SystemExit:
        assume(False)  # Locust refuses it itself (ambiguous, missing value): nothing gets through
    changed = [dest for dest, default in defaults.items() if getattr(parsed, dest, default) != default]
    if changed:
        assert reserved_options(tokens), (tokens, changed)


@pytest.mark.parametrize(
    "tokens",
    [["--max-concurrent", "8"], ["--breaker-mode", "rate", "--keep-alive", "true"], ["--loglevel", "DEBUG"],
     ["-L", "DEBUG"], ["--path", "/doWork?expansion=2"],
     ["--web-host-display-name", "x"], ["--master-host", "x"], ["--tags", "a"], ["-T", "a"]],
)  # fmt: skip
def test_options_the_comparison_does_not_set_still_pass(tokens):
    assert reserved_options(tokens) == []


@pytest.mark.slow
def test_real_comparison_processes_refuse_at_once_with_one_line(tmp_path):
    cases = [
        ["--host", "http://[::1"],
        ["--host", "http://a b"],
        ["--results-dir", "/proc/forbidden"],
        ["--results-dir", "/dev/null/x"],
        ["--results-dir", "/etc/passwd"],
        ["--", "-u5"],
        ["--", "--run-tim", "1s"],
        ["--", "--max-concurrent", "0"],  # checked by Locust's own parser (`locust --list`)
    ]
    commands = [
        [sys.executable, "-m", "comparison", *(c if "--results-dir" in c else with_results_dir(c, tmp_path))]
        for c in cases
    ]
    for case, (code, out, err) in zip(cases, run_all(commands, timeout=HANG_S * 2), strict=True):
        assert code == 2, (case, code, err[-800:])
        assert err.count("\n") == 1 and "Traceback" not in out + err, (case, err)
    assert list(tmp_path.iterdir()) == []


def test_the_suite_has_at_least_100_generated_cases():
    assert len(PLUGIN_CASES) + len(COMPARISON_CASES) >= 100
    assert Path(__file__).name == "test_bad_input_client.py"


def test_docs_limits_states_every_range():
    limits = (ROOT / "docs" / "limits.md").read_text()
    missing = [
        option.flag for option in OPTIONS if f"| `{option.flag}` | {option.allowed or ''}" not in limits
    ]
    assert not missing
    assert "| `--server-sample-ms` | 100 to 10,000 ms, or 0 = never |" in limits
    assert "(docs/limits.md)" in (ROOT / "README.md").read_text()


@pytest.mark.slow
def test_external_workers_that_never_come_end_the_run_with_one_line(start_target, tmp_path):
    """The master waits --external-workers-wait, gives up, and the comparison says so in one line."""
    from comparison.locust_run import free_port

    target, port = start_target(), free_port()
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "comparison", "--external-workers", "2", "--master-bind-host", "127.0.0.1",
         "--master-bind-port", str(port), "--external-workers-wait", "2", "--host", target.url,
         "--capacity", "50", "--duration", "5", "--clients", "HammerClient", "--results-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith(
        f"python -m comparison: error: HammerClient: the 2 external workers did not all connect to "
        f"127.0.0.1:{port} within 2 s"
    ), result.stderr
    assert "docs/distributed.md" in result.stderr
    assert time.monotonic() - started < 30
