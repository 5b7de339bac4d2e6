"""Bad input on the surfaces added last (issue 18, items 16-21 and 23-25): the files the comparison reads
and writes (`--junit`, `--baseline`, `--rerun`'s run.json, `--body-file`), `--check` numbers,
`--server-metric(s)`, the runner's whole numbers and `--mix`, the target's `--latency-profile` (flag and
environment), and the web UI's start form and fault control.

Every case ends cleanly: exit 2 with one line naming the option and no traceback, or a 4xx with one line,
within 5 s, and nothing is written. Cases are generated from classes of wrong input (files that are not
regular, unreadable, too big, nested too deep, of the wrong shape; numbers that are not plain ASCII or
not finite; URLs with the wrong port, user or characters) and run in-process through the real parsers,
the target's real `main()` and Flask's test client on the real web UI; a handful run as processes.
`test_the_bad_input_suites_hold_at_least_1000_cases` counts the cases of all three bad-input suites.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

import pytest

from comparison.__main__ import build_parser
from comparison.__main__ import main as comparison_main
from locust_plugin.mix import parse_mix as plugin_mix
from tests import test_bad_input_client as client_suite
from tests import test_bad_input_target as target_suite
from tests.locust_run import ROOT
from tests.test_bad_input_client import locust_parser, one_line_exit_2, parse_locust, run_all  # noqa: F401

HANG_S = 5.0
OUTCOMES: Counter[str] = Counter()
ARABIC_ONE, ARABIC_THREE, FULL_WIDTH_THREE = "\u0661", "\u0663", "\uff13"
DEEP = 100_000


@pytest.fixture(autouse=True)
def _no_run_may_start(monkeypatch) -> None:
    """A tripwire: every case here must be refused before the comparison runs anything."""
    import comparison.phase_map
    import comparison.runner

    def tripwire(*args, **kwargs):
        raise AssertionError(f"a bad input was accepted and a run would start: {args[:1]}")

    monkeypatch.setattr(comparison.runner, "run", tripwire)
    monkeypatch.setattr(comparison.phase_map, "run_map", tripwire)


@pytest.fixture(scope="module", autouse=True)
def _report_outcomes() -> Iterator[None]:
    yield
    print(f"\nbad-input surfaces: {sum(OUTCOMES.values())} cases: " + ", ".join(
        f"{k} {v}" for k, v in sorted(OUTCOMES.items())))  # fmt: skip


# -- files of every wrong kind, made once per module ---------------------------------------------------------


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> Callable[[str], str]:
    """name -> a path of that kind under a module temp folder (made on first use)."""
    root = tmp_path_factory.mktemp("bad")

    def make(name: str) -> str:
        path = root / name
        if name == "fifo":
            if not path.exists():
                os.mkfifo(path)
        elif name == "folder":
            path.mkdir(exist_ok=True)
        elif name == "loop":
            if not path.is_symlink():
                path.symlink_to(root / "loop")
        elif name == "big":
            path.write_bytes(b"x" * (1024 * 1024 + 1))
        elif name == "file":
            path.write_text("data\n")
        return str(path)

    return make


def run_folder(
    root: Path, name: str, run_json: str | bytes | None = None, summary: str | None = None
) -> Path:
    folder = root / name
    folder.mkdir(exist_ok=True)
    if run_json == "fifo":
        os.mkfifo(folder / "run.json")
    elif run_json == "loop":
        (folder / "run.json").symlink_to(folder / "run.json")
    elif run_json == "folder":
        (folder / "run.json").mkdir()
    elif run_json is not None:
        data = run_json if isinstance(run_json, bytes) else run_json.encode()
        (folder / "run.json").write_bytes(data)
    if summary is not None:
        (folder / "summary.csv").write_text(summary, encoding="utf-8")
    return folder


def comparison_refuses(argv: list[str], names: str, capsys, tmp_path: Path) -> None:
    """`python -m comparison argv` in-process: exit 2, one line naming `names`, nothing written."""
    results = tmp_path / "results"
    started = time.monotonic()
    cut = argv.index("--") if "--" in argv else len(argv)
    code = comparison_main([*argv[:cut], "--results-dir", str(results), *argv[cut:]])
    err = capsys.readouterr().err
    assert code == 2, (argv, err)
    assert err.count("\n") == 1 and err.startswith("python -m comparison: error: "), err
    assert "Traceback" not in err and names in err, (names, err)
    assert time.monotonic() - started < HANG_S
    assert not results.exists()  # refused before any run folder
    OUTCOMES["exit 2 one line (comparison)"] += 1


# -- 16: --junit ---------------------------------------------------------------------------------------------

JUNIT_PATHS = ["folder", "/proc/x.xml", "/nope/missing/x.xml", "/dev/full", "fifo", "a\x00b.xml", "/dev/null",
               "/sys/x.xml", "/etc/hostname/x.xml", "/proc/self/mem", "loop", "/", "/dev/stdout"]  # fmt: skip


@pytest.mark.parametrize("where", JUNIT_PATHS)
def test_16_a_junit_path_that_cannot_be_written_is_refused_before_the_run(where, bad, capsys, tmp_path):
    path = bad(where) if where in ("folder", "fifo", "loop") else where
    comparison_refuses(
        ["--check", "p99_ms < 5", "--junit", path, "--capacity", "50"], "--junit", capsys, tmp_path
    )


# -- 17: --baseline ------------------------------------------------------------------------------------------

GOOD_RUN = '{"clients": ["HammerClient"]}'
BASELINES = {
    "not-json": ("{x", None),
    "a-list": ("[1, 2]", None),
    "a-string": ('"run"', None),
    "null": ("null", None),
    "deep": ("[" * DEEP + "]" * DEEP, None),
    "not-utf8": (b"\xff\xfe{", None),
    "clients-text": ('{"clients": "HammerClient"}', None),
    "clients-numbers": ('{"clients": [1, 2]}', None),
    "clients-paths": ('{"clients": ["../../etc"]}', None),
    "other-columns": (GOOD_RUN, "a,b\n1,2\n"),
    "huge-field": (GOOD_RUN, 'client,p99_ms\nX,"' + "9" * 200_000 + '"\n'),
    "no-client-column": (GOOD_RUN, "p99_ms\n5\n"),
    "run-json-fifo": ("fifo", None),
    "run-json-loop": ("loop", None),
    "run-json-folder": ("folder", None),
    "no-run-json": (None, None),
}


@pytest.mark.parametrize("kind", [*sorted(BASELINES), "folder-loop", "a-file"])
def test_17_a_baseline_that_cannot_be_read_is_refused_before_the_run(kind, capsys, tmp_path):
    if kind == "folder-loop":
        folder = tmp_path / "loop"
        folder.symlink_to(tmp_path / "loop")
    elif kind == "a-file":
        folder = tmp_path / "file"
        folder.write_text("x")
    else:
        folder = run_folder(tmp_path, kind, *BASELINES[kind])
    comparison_refuses(["--baseline", str(folder), "--capacity", "50"], "--baseline", capsys, tmp_path)


def test_17_a_baseline_that_breaks_during_the_run_leaves_a_report_that_says_so(tmp_path):
    from comparison.baseline import BaselineError, load, unreadable_section

    folder = run_folder(tmp_path, "later", "[1]")
    with pytest.raises(BaselineError, match="not a run record"):
        load(folder)
    assert "could not be read" in unreadable_section(folder, "x")


# -- 18: --check numbers -------------------------------------------------------------------------------------

HUGE = ["9" * 400, "1e400", "1" + "0" * 301, "1e301", "9e999", "1" + "0" * 4000]
CHECKS = [
    template.format(n=number)
    for number in HUGE
    for template in ["p99_ms < {n}", "{n} > p99_ms", "*: p99_ms * {n} >= 1", "p99_ms <= -{n}",
                     "HammerClient: server_errors == {n} / 2"]
]  # fmt: skip


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c[:30])
def test_18_a_check_with_a_number_too_large_for_a_float_is_one_line(check, capsys, tmp_path):
    comparison_refuses(["--check", check, "--clients", "HammerClient"], "--check", capsys, tmp_path)


# -- 19: --rerun ---------------------------------------------------------------------------------------------

RERUNS = {
    "argv-text": '{"reproduce": {"argv": "--duration 5"}}',
    "argv-numbers": '{"reproduce": {"argv": [5, 6]}}',
    "argv-nulls": '{"reproduce": {"argv": ["--duration", null]}}',
    "argv-object": '{"reproduce": {"argv": {"a": 1}}}',
    "argv-nested": '{"reproduce": {"argv": [["--duration", "5"]]}}',
    "argv-nul": '{"reproduce": {"argv": ["--path", "/a\\u0000"]}}',
    "reproduce-list": '{"reproduce": []}',
    "no-reproduce": "{}",
    "top-list": "[]",
    "not-json": "{",
    "deep": "[" * DEEP + "]" * DEEP,
    "fifo": "fifo",
    "loop": "loop",
    "folder": "folder",
    "missing": None,
}


@pytest.mark.parametrize("kind", sorted(RERUNS))
def test_19_a_rerun_folder_that_cannot_be_repeated_is_one_line(kind, capsys, tmp_path):
    folder = run_folder(tmp_path, kind, RERUNS[kind])
    started = time.monotonic()
    code = comparison_main(["--rerun", str(folder)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--rerun" in err and "Traceback" not in err, err
    assert time.monotonic() - started < HANG_S
    assert sorted(p.name for p in tmp_path.iterdir()) == [kind]  # no new run folder beside it
    OUTCOMES["exit 2 one line (comparison)"] += 1


def _abbreviations() -> list[str]:
    """Every shortening (3+ characters) of every long option of the runner: argparse took them all."""
    flags = sorted(s for a in build_parser()._actions for s in a.option_strings if s.startswith("--"))
    return sorted({flag[:n] for flag in flags for n in range(4, len(flag)) if flag[:n] not in flags})


ABBREVIATIONS = _abbreviations()


@pytest.mark.parametrize("abbreviation", ABBREVIATIONS)
def test_19_an_abbreviated_runner_option_is_refused_not_guessed(abbreviation, capsys, tmp_path):
    comparison_refuses([abbreviation, "5", "--capacity", "50"], "unrecognized arguments", capsys, tmp_path)


# -- 20: --body-file -----------------------------------------------------------------------------------------

BODY_FILES = ["/proc/self/mem", "/proc/kallsyms", "/dev/zero", "/dev/urandom", "fifo", "folder", "big",
              "loop", "/nope/x", "/proc/self/fd/999", "/proc/self/mem\x00"]  # fmt: skip


@pytest.mark.parametrize("where", BODY_FILES)
@pytest.mark.parametrize("spelling", ["own", "after --", "after -- glued"])
def test_20_a_body_file_that_cannot_be_read_whole_is_refused_before_any_folder(
    where, spelling, bad, capsys, tmp_path
):
    path = bad(where) if where in ("fifo", "folder", "big", "loop") else where
    if spelling == "own":
        argv = ["--method", "POST", "--body-file", path]
    elif spelling == "after --":
        argv = ["--method", "POST", "--", "--body-file", path]
    else:
        argv = ["--method", "POST", "--", f"--body-fi={path}"]
    comparison_refuses(argv, "--body-file", capsys, tmp_path)


@pytest.mark.parametrize("where", BODY_FILES)
def test_20_the_plugin_refuses_the_same_body_files(where, bad, locust_parser):  # noqa: F811
    path = bad(where) if where in ("fifo", "folder", "big", "loop") else where
    with one_line_exit_2() as err:
        parse_locust(locust_parser, "--body-file", path)
    assert "argument --body-file:" in err.getvalue()
    OUTCOMES["exit 2 one line (locust)"] += 1


# -- 21: the target's --latency-profile ----------------------------------------------------------------------

PROFILES: dict[str, bytes | str] = {
    "deep.json": b'{"percentiles_ms": ' + b"[" * DEEP + b"]" * DEEP + b"}",
    "deep-object.json": b'{"samples_ms": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}",
    "huge-field.csv": b'latency_ms\n"' + b"1" * 140_000 + b'"\n',
    "nul.csv": b"latency_ms\n1\x00\n",
    "duplicate.json": b'{"cpu_share": 0.5, "cpu_share": 0.2, "percentiles_ms": {"0": 1, "100": 2}}',
    "duplicate-percentile.json": b'{"cpu_share": 0.5, "percentiles_ms": {"50": 1, "50": 2}}',
    "nan.json": b'{"cpu_share": NaN, "percentiles_ms": {"0": 1, "100": 2}}',
    "infinity.json": b'{"cpu_share": 0.5, "percentiles_ms": {"0": 1, "100": Infinity}}',
    "1e400.json": b'{"cpu_share": 0.5, "percentiles_ms": {"0": 1, "100": 1e400}}',
    "arabic.json": '{"cpu_share": 0.5, "percentiles_ms": {"\u0665\u0660": 1, "100": 2}}'.encode(),
    "arabic.csv": "percentile,latency_ms\n\u0665\u0660,1\n100,2\n".encode(),
    "full-width.csv": "latency_ms\n\uff11\n2\n".encode(),
    "underscore.csv": b"latency_ms\n1_0\n2\n",
    "list.json": b"[1, 2]",
    "not-utf8.json": b"\xff\xfe{",
    "big-int.json": b'{"cpu_share": 0.5, "samples_ms": [' + b"9" * 5000 + b", 1]}",
    "empty.csv": b"",
}
SPECIAL = ["fifo", "folder", "loop", "/dev/zero", "/proc/self/mem", "/nope/p.json"]


@pytest.mark.parametrize("via", ["flag", "env"])
@pytest.mark.parametrize("name", sorted(PROFILES) + SPECIAL)
def test_21_a_latency_profile_that_cannot_be_used_is_one_line(name, via, bad, tmp_path):
    if name in PROFILES:
        path = tmp_path / name
        path.write_bytes(PROFILES[name])  # type: ignore[arg-type]
        path = str(path)
    else:
        path = bad(name) if name in ("fifo", "folder", "loop") else name
    argv = ["--latency-profile", path, "--cpu-share", "0.5"] if via == "flag" else ["--cpu-share", "0.5"]
    env = {"TARGET_LATENCY_PROFILE": path} if via == "env" else {}
    started = time.monotonic()
    code, output = target_suite.run_main(argv, env)
    target_suite.assert_one_line_exit_2(code, output, "latency")
    assert time.monotonic() - started < HANG_S
    OUTCOMES["exit 2 one line (target)"] += 1


# -- 23: the web UI ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def web_ui():
    """The real web UI with the plugin installed, in this process; Flask's test client talks to it."""
    from locust import events
    from locust.argument_parser import parse_options
    from locust.env import Environment

    import locust_plugin  # noqa: F401  (registers the listeners)
    from locustfiles.clients import HammerClient

    with mock.patch.object(sys, "argv", ["locust"]):  # Locust also reads sys.argv (pytest's here)
        options = parse_options(["-f", "locustfiles", "-H", "http://127.0.0.1:9", "--web-port", "0"])
        environment = Environment(
            user_classes=[HammerClient], parsed_options=options, events=events, host=options.host
        )
        runner = environment.create_local_runner()
        ui = environment.create_web_ui("127.0.0.1", 0)
        events.init.fire(environment=environment, runner=runner, web_ui=ui)
        yield ui
    runner.quit()
    ui.stop()


def one_line_4xx(response) -> str:
    assert 400 <= response.status_code < 500, (response.status_code, response.get_data()[:300])
    data = response.get_json()
    line = data.get("message") or data.get("error")
    assert isinstance(line, str) and "\n" not in line and "Traceback" not in line, data
    OUTCOMES[f"{response.status_code} (web UI)"] += 1
    return line


FAULT_BODIES = [
    b"[" * 10_000 + b"]" * 10_000,
    b'{"kind": ' + b"{" * 10_000,
    b'{"kind": "outage", "duration_s": NaN}',
    b'{"kind": "outage", "duration_s": Infinity}',
    b'{"kind": "outage", "duration_s": -Infinity}',
    b'{"kind": "outage", "duration_s": 1e400}',
    b'{"kind": "outage", "duration_s": -1e400}',
    b'{"kind": "error", "rate": 1e999}',
    b'{"kind": "outage", "kind": "slow", "duration_s": 5}',
    b'{"kind": "outage", "duration_s": 5, "duration_s": 6}',
    b'{"kind": "outage", "duration_s": ' + b"9" * 5000 + b"}",
    b"[]",
    b'"outage"',
    b"5",
    b"null",
    b"",
    b"\xff\xfe{}",
    b'{"kind": "outage"',
    b'{"kind": "outage", "pad": "' + b"x" * 70_000 + b'"}',
]


@pytest.mark.parametrize("body", FAULT_BODIES, ids=lambda b: repr(b[:30]))
def test_23_a_fault_body_that_is_not_strict_json_is_a_400(web_ui, body):
    response = web_ui.app.test_client().post(
        "/hammerlab/faults", data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    one_line_4xx(response)


SWARM_FORMS = [
    *({"host": host} for host in ["ftp://127.0.0.1:9", "not a url", "http://127.0.0.1:9/<script>", "h:9",
                                  "http://", "http://user@127.0.0.1:9", "http://127.0.0.1:99999",
                                  "http://127.0.0.1:-1", "http://127.0.0.1:0", "javascript:alert(1)",
                                  "http://h\u00f6st", "http://127.0.0.1:9/a b", 'http://127.0.0.1:9/"',
                                  "http://127.0.0.1:9#x", "file:///etc/passwd", "http://" + "a" * 3000])
    ,
    *({"abort_on": value} for value in ["p99>5s for 5s", "server_error_rate>20% for 5s", "nonsense", "x,y"]),
    *({"header": value} for value in ["X-A: b", "Host: evil.example", "nonsense", "X-A: b, c"]),
    *({"server_metric": value} for value in ["in_flight=x", "nonsense", "lag_ms=x*1e308"]),
    *({"server_metrics": value} for value in ["http://127.0.0.1:99999/m", "http://u@127.0.0.1:9/m", "ftp://x",
                                              "http://127.0.0.1:9/m\u00e9", "http://127.0.0.1:-1/m"]),
    *({"mix": value} for value in ["HammerClient:\u0661", "HammerClient:0_1", "HammerClient", "1x:1"]),
]  # fmt: skip


@pytest.mark.parametrize("form", SWARM_FORMS, ids=lambda f: repr(f)[:40])
def test_23_a_start_form_field_locust_would_store_unchecked_is_a_400(web_ui, form):
    before = vars(web_ui.environment.parsed_options).copy()
    response = web_ui.app.test_client().post("/swarm", data={"user_count": "1", "spawn_rate": "1", **form})
    assert response.status_code == 400
    line = one_line_4xx(response)
    assert next(iter(form)).replace("_", "-") in line or "host" in line, line
    assert vars(web_ui.environment.parsed_options) == before  # nothing stored
    assert web_ui.environment.runner.user_count == 0  # nothing started


# -- 24: --server-metric factors -----------------------------------------------------------------------------

FACTORS = ["*1e308", "/1e-320", "*0", "/0", "*0.0", "*1e13", "/1e13", "*1e400", "/1e400", "*" + "9" * 400,
           "*1e-13", "/1e-300", "*00000000000000000000000000000000000000000001"]  # fmt: skip


@pytest.mark.parametrize("factor", FACTORS)
@pytest.mark.parametrize("side", ["comparison", "locust"])
def test_24_a_factor_outside_1e_minus_12_to_1e12_is_refused(factor, side, capsys, tmp_path, locust_parser):  # noqa: F811
    mapping = f"completed_total=target_requests_total{factor}"
    if side == "comparison":
        argv = ["--server-metrics", "/metrics", "--server-metric", mapping, "--capacity", "50"]
        comparison_refuses(argv, "--server-metric", capsys, tmp_path)
    else:
        with one_line_exit_2() as err:
            parse_locust(locust_parser, "--server-metrics", "/metrics", "--server-metric", mapping)
        assert "argument --server-metric:" in err.getvalue()
        OUTCOMES["exit 2 one line (locust)"] += 1


def test_24_a_sum_that_overflows_is_no_value_not_a_dead_sampler():
    from locust_plugin.server_metrics import Scraped, pick
    from mitigations.metrics_map import SeriesMap

    series = SeriesMap.parse("completed_total=x*1e12")
    assert pick(series, {"x": [Scraped({}, 1e300, True), Scraped({}, 1e300, True)]}) is None


# -- 25: lenient numbers and URLs ----------------------------------------------------------------------------

NOT_WHOLE = [ARABIC_ONE, ARABIC_THREE, FULL_WIDTH_THREE, "0_1", "1_0", "\u00b9", "nan", "1.0", "1e0", "0x1",
             "", " ", "1 2", "\u20121"]  # fmt: skip


@pytest.mark.parametrize("value", NOT_WHOLE)
@pytest.mark.parametrize("flag", ["--workers", "--target-workers", "--mix"])
def test_25_only_ascii_digits_are_whole_numbers(flag, value, capsys, tmp_path):
    argv = [flag, f"HammerClient:{value},AdaptiveClient:1" if flag == "--mix" else value, "--capacity", "50"]
    comparison_refuses(argv, flag, capsys, tmp_path)


@pytest.mark.parametrize("value", NOT_WHOLE)
def test_25_the_plugins_mix_takes_ascii_digits_only(value):
    with pytest.raises(ValueError) as error:
        plugin_mix(f"HammerClient:{value}")
    assert "\n" not in str(error.value)
    OUTCOMES["ValueError one line (plugin --mix)"] += 1


SCRAPE_URLS = ["http://127.0.0.1:99999/metrics", "http://127.0.0.1:-1/metrics", "http://127.0.0.1:0/metrics",
               "http://user@127.0.0.1:9/metrics", "http://u:p@127.0.0.1:9/metrics", "http://h\u00f6st/metrics",
               "http://127.0.0.1:9/m\u00e9trics", "http://127.0.0.1:9/a b", "http://127.0.0.1:x/metrics",
               "ftp://127.0.0.1/metrics", "//127.0.0.1/metrics", "metrics", "http://", "http://[::1/metrics",
               f"http://127.0.0.1:{FULL_WIDTH_THREE}/metrics", "http://127.0.0.1:9/\x00"]  # fmt: skip


@pytest.mark.parametrize("url", SCRAPE_URLS)
@pytest.mark.parametrize("side", ["comparison", "locust"])
def test_25_a_scrape_url_with_a_bad_port_user_or_character_is_refused(
    url,
    side,
    capsys,
    tmp_path,
    locust_parser,  # noqa: F811
):
    if side == "comparison":
        comparison_refuses(
            ["--server-metrics", url, "--capacity", "50"], "--server-metrics", capsys, tmp_path
        )
    else:
        with one_line_exit_2() as err:
            parse_locust(locust_parser, "--server-metrics", url)
        assert "argument --server-metrics:" in err.getvalue()
        OUTCOMES["exit 2 one line (locust)"] += 1


def test_25_one_strict_json_loader_and_one_number_syntax_serve_every_surface():
    from comparison import __main__ as comparison_cli
    from locust_plugin import values, web_forms
    from target_server import guard, latency_profile, numbers

    assert values.DECIMAL is numbers.DECIMAL and values.INTEGER is numbers.INTEGER
    assert comparison_cli.DECIMAL is numbers.DECIMAL and comparison_cli.parse_int is numbers.parse_int
    assert guard.strict_json is latency_profile.strict_json is web_forms.strict_json is numbers.strict_json
    assert values.whole(1, 5).__name__ == "whole" and values.number(1, 5).__name__ == "number"


# -- a few real processes ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_processes_refuse_the_new_surfaces_at_once(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    rerun = run_folder(tmp_path, "rerun", "fifo")
    baseline = run_folder(tmp_path, "baseline", "[1]")
    results = str(tmp_path / "results")
    python = sys.executable
    commands = [
        [python, "-m", "comparison", "--check", "p99_ms<5", "--junit", str(tmp_path / "fifo"),
         "--results-dir", results],
        [python, "-m", "comparison", "--rerun", str(rerun)],
        [python, "-m", "comparison", "--baseline", str(baseline), "--results-dir", results],
        [python, "-m", "comparison", "--rer", str(rerun), "--results-dir", results],
        [python, "-m", "comparison", "--body-file", "/proc/self/mem", "--method", "POST",
         "--results-dir", results],
    ]  # fmt: skip
    env_fifo = {**os.environ, "TARGET_LATENCY_PROFILE": str(tmp_path / "fifo")}
    outcomes = run_all(commands, timeout=HANG_S * 3)
    import subprocess

    target = subprocess.run([python, "-m", "target_server", "--cpu-share", "0.5"], cwd=ROOT, env=env_fifo,
                            capture_output=True, text=True, timeout=HANG_S * 3)  # fmt: skip
    outcomes.append((target.returncode, target.stdout, target.stderr))
    for command, (code, out, err) in zip([*commands, ["target"]], outcomes, strict=True):
        assert code == 2, (command, code, err[-600:])
        assert err.count("\n") == 1 and "Traceback" not in out + err, (command, err)
        OUTCOMES["exit 2 one line (process)"] += 1
    assert not Path(results).exists()


# -- the count -----------------------------------------------------------------------------------------------


def _examples(test: object) -> int:
    return test._hypothesis_internal_use_settings.max_examples  # type: ignore[attr-defined]


def suite_counts() -> dict[str, int]:
    """Cases per bad-input suite: every parametrized bad case plus every generated (hypothesis) one."""
    client = (
        len(client_suite.PLUGIN_CASES)
        + len(client_suite.COMPARISON_CASES)
        + len(client_suite.REAL_LOCUST_CASES)
        + 8  # test_real_comparison_processes_refuse_at_once_with_one_line
        + _examples(client_suite.test_any_number_outside_the_range_is_refused_and_any_inside_kept)
        + _examples(client_suite.test_whatever_locust_would_take_as_a_reserved_option_the_comparison_refuses)
    )  # fmt: skip
    generated = (
        target_suite.test_bad_flags_exit_2_with_one_line,
        target_suite.test_bad_env_vars_exit_2_with_one_line,
        target_suite.test_bad_queries_are_a_400,
        target_suite.test_bad_admin_requests_are_a_4xx,
        target_suite.test_malformed_http_is_a_4xx_and_the_connection_closes,
    )
    target = sum(_examples(test) for test in generated) + 4  # and four real processes
    surfaces = (
        len(JUNIT_PATHS) + len(BASELINES) + 2 + len(CHECKS) + len(RERUNS) + len(ABBREVIATIONS)
        + len(BODY_FILES) * 4 + (len(PROFILES) + len(SPECIAL)) * 2 + len(FAULT_BODIES) + len(SWARM_FORMS)
        + len(FACTORS) * 2 + len(NOT_WHOLE) * 4 + len(SCRAPE_URLS) * 2 + 6
    )  # fmt: skip
    return {"client": client, "target": target, "surfaces": surfaces}


def test_the_bad_input_suites_hold_at_least_1000_cases():
    counts = suite_counts()
    print(f"\nbad-input suites: {counts}, {sum(counts.values())} in all")
    assert sum(counts.values()) >= 1000
    assert counts["surfaces"] >= 400
