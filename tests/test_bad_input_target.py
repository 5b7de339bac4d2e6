"""Generated bad input for the target server (issue 10): flags, TARGET_* env vars, query strings, /admin
bodies and raw malformed HTTP. Every case must end cleanly: exit 2 with one line and no traceback, or a
4xx with a JSON error, and never hang for more than 5 s.

Hypothesis builds each value from a class of wrong inputs (out of range, full-width or Arabic-Indic
digits, `_`, NaN/inf, repeated keys, the work cap, broken framing...), so no generated case is valid by
accident. Flag and env cases run through `main()` in-process with `serve` replaced by a tripwire; a few
run as real subprocesses. One server (with 1 s timeouts) takes every HTTP case.

Run with `-s` to see the count of cases by outcome.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import urllib.parse
from collections import Counter
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from target_server import __main__ as target_main
from target_server import server as target_server_module
from target_server.config_sources import FAULT_ENV, FAULT_FLAG
from target_server.faults import KEYS, KINDS
from target_server.options import OPTIONS, QUERY_OPTIONS, Option
from tests.conftest import ROOT, launch_target
from tests.raw_client import exchange

pytestmark = pytest.mark.slow  # each test starts a real server or a subprocess

SETTINGS = {
    "deadline": None,
    "derandomize": True,
    "database": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}
HANG_S = 5.0
OUTCOMES: Counter[str] = Counter()


@pytest.fixture(scope="module")
def server():
    server = launch_target(header_timeout_s=1, idle_timeout_s=1)
    yield server
    server.stop()
    server.log_path.unlink(missing_ok=True)
    total = sum(OUTCOMES.values())
    print(f"\nbad-input suite: {total} cases: " + ", ".join(f"{k} {v}" for k, v in sorted(OUTCOMES.items())))


# -- wrong values, by class ----------------------------------------------------------------------------

FULL_WIDTH = str.maketrans("0123456789", "".join(chr(0xFF10 + d) for d in range(10)))
ARABIC_INDIC = str.maketrans("0123456789", "".join(chr(0x0660 + d) for d in range(10)))
NOT_NUMBERS = st.sampled_from(
    ["nan", "NaN", "inf", "-inf", "Infinity", "1e309", "-1e309", "0x10", "1,5", "--1", "1e", ".", "", " "]
)
WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz!?#", min_size=1, max_size=8)


def _num_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def out_of_range(option: Option) -> st.SearchStrategy[str]:
    """Numbers just or far outside the option's range, written plainly."""
    choices = []
    if option.high is not None:
        high = option.high
        choices.append(st.integers(int(high) + 1, int(high) * 1000 + 10**6).map(str))
    if option.low is not None:
        low = option.low
        below = st.floats(-1e12, low, exclude_max=not option.low_exclusive, allow_nan=False)
        choices.append(below.filter(lambda v: v < low or option.low_exclusive).map(_num_text))
    return st.one_of(choices)


def lenient_digits(option: Option) -> st.SearchStrategy[str]:
    """In-range numbers as Python's int()/float() accept them but the server must not."""
    low = int(option.low or 0) + 1
    high = max(low, min(int(option.high or 1000), 1000))
    value = st.integers(low, high).map(str)
    return st.one_of(
        value.map(lambda s: s.translate(FULL_WIDTH)),
        value.map(lambda s: s.translate(ARABIC_INDIC)),
        value.map(lambda s: s[0] + "_" + s[1:] if len(s) > 1 else s + "_0"),
        value.map(lambda s: "\u3000" + s),  # ideographic space
    )


def bad_text(option: Option) -> st.SearchStrategy[str]:
    """A wrong value for `option` as flag, env or query text."""
    if option.kind is bool:
        return WORDS.filter(lambda w: w.lower() not in {"1", "0", "true", "false", "yes", "no", "on", "off"})
    if option.kind is str:
        return st.sampled_from(["a b", "tab\there", "new\nline", "caf\u00e9", "\u202ertl", "x\x00y"])
    wrong = [
        out_of_range(option),
        lenient_digits(option),
        NOT_NUMBERS.filter(lambda s: s.strip() != "" or not option.nullable),
        WORDS,
    ]
    if option.kind is int:
        wrong.append(st.floats(1.5, 9.5).map(lambda f: f"{f:.1f}"))
    return st.one_of(wrong)


NUMERIC = [o for o in OPTIONS if o.kind in (int, float)]
TEXT_OPTIONS = [o for o in OPTIONS if o.name != "stats_dir"]  # any printable path is a valid stats_dir
BAD_FAULT_SPECS = st.one_of(
    st.sampled_from(
        [
            "slow:delay_ms=0",
            "slow:delay_ms=-1",
            "error:status=0",
            "error:status=200",
            "outage:duration_s=1e308",
            "outage:duration_s=86401",
            "outage",
            "error:rate=2",
            "error:rate=nan",
            "slow:delay_ms=1,delay_ms=2",
            "hang:delay_ms=5",
            "reset:status=503",
            "slow:delay_ms=3_0",
            "error:rate",
        ]
    ),
    WORDS.filter(lambda w: w not in KINDS),
    st.integers(1, 999).map(lambda n: f"slow:delay_ms={str(n).translate(FULL_WIDTH)}"),
)


@st.composite
def bad_flag(draw: st.DrawFn) -> tuple[list[str], str]:
    """(argv, what the error must name)."""
    kind = draw(st.sampled_from(["option", "option", "option", "fault", "unknown", "cap", "shedding"]))
    if kind == "shedding":  # sheddable requests may not be shed later than critical ones
        max_lag = draw(st.integers(1, 1000))
        return [
            "--max-lag-ms",
            str(max_lag),
            "--sheddable-lag-ms",
            str(draw(st.integers(max_lag + 1, 60_000))),
        ], ("--sheddable-lag-ms")
    if kind == "fault":
        spec = draw(BAD_FAULT_SPECS)
        return [FAULT_FLAG, spec], FAULT_FLAG
    if kind == "unknown":
        word = draw(WORDS.filter(lambda w: not any(o.flag.startswith("--" + w) for o in OPTIONS)))
        return ["--" + word, "1"], "--" + word
    if kind == "cap":
        expansion = draw(st.integers(2, 1000))
        sync = draw(st.integers(1000 // expansion + 1, 10_000))
        return ["--expansion", str(expansion), "--sync-work-ms", str(sync)], "--max-work-ms"
    option = draw(st.sampled_from(TEXT_OPTIONS))
    value = draw(bad_text(option))
    if option.kind is bool:
        return [option.flag + "=" + value], option.flag
    return [option.flag + "=" + value], option.flag


@st.composite
def bad_env(draw: st.DrawFn) -> tuple[dict[str, str], str]:
    if draw(st.integers(0, 5)) == 0:
        return {FAULT_ENV: draw(BAD_FAULT_SPECS)}, FAULT_ENV
    option = draw(st.sampled_from(TEXT_OPTIONS))
    value = draw(bad_text(option).filter(lambda v: "\x00" not in v))  # the environment cannot hold NUL
    return {option.env: value}, option.env


def run_main(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """`python -m target_server` in-process; `serve` is a tripwire, since every case must be refused."""
    stderr = io.StringIO()
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("TARGET_")} | env

    def tripwire(config, on_ready=None):
        raise AssertionError(f"accepted a bad input: {argv} {env}")

    with (
        mock.patch.dict(os.environ, clean_env, clear=True),
        mock.patch.object(target_server_module, "serve", tripwire),
        contextlib.redirect_stderr(stderr),
    ):
        code = target_main.main(argv)
    return code, stderr.getvalue()


def assert_one_line_exit_2(code: int, output: str, names: str) -> None:
    assert code == 2, output
    assert output.count("\n") == 1 and output.endswith("\n"), repr(output)
    assert "Traceback" not in output and output.startswith("target_server: error: ")
    assert names in output or names.lstrip("-") in output, (names, output)


@settings(max_examples=40, **SETTINGS)
@given(case=bad_flag())
def test_bad_flags_exit_2_with_one_line(server, case):
    argv, names = case
    code, output = run_main(argv, {})
    assert_one_line_exit_2(code, output, names)
    OUTCOMES["exit 2 (flag)"] += 1


@settings(max_examples=25, **SETTINGS)
@given(case=bad_env())
def test_bad_env_vars_exit_2_with_one_line(server, case):
    env, names = case
    code, output = run_main([], env)
    assert_one_line_exit_2(code, output, names)
    OUTCOMES["exit 2 (env)"] += 1


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["--port", "3_000"], {}),
        (["--port", "\uff13\uff10\uff10\uff10"], {}),
        ([], {"TARGET_SYNC_WORK_MS": "nan"}),
        ([FAULT_FLAG, "slow:delay_ms=0"], {}),
    ],
)
def test_bad_input_exits_2_as_a_real_process(server, argv, env):
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("TARGET_")} | env
    proc = subprocess.run(
        [sys.executable, "-m", "target_server", *argv],
        cwd=ROOT,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=HANG_S * 3,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    OUTCOMES["exit 2 (process)"] += 1


# -- HTTP: queries, admin bodies, raw framing -------------------------------------------------------------


def http(port: int, raw: bytes) -> tuple[int, bytes, float]:
    """Send one request (which asks to close); return (status, body, seconds) once the server closes."""
    answer, closed, seconds = exchange(port, raw, HANG_S)
    if not closed:
        pytest.fail(f"no end within {HANG_S} s for {raw[:120]!r}; got {answer[:120]!r}")
    assert answer.startswith(b"HTTP/1.1 "), f"{raw[:120]!r} got {answer[:120]!r}"
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body, seconds


def assert_4xx_json(status: int, body: bytes, raw: bytes) -> None:
    assert 400 <= status < 500, (status, raw[:200], body[:200])
    assert b"Traceback" not in body
    assert "error" in json.loads(body), body


QUERY_NUMERIC = [o for o in OPTIONS if o.query]


@st.composite
def bad_query(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["value", "value", "repeat", "unknown", "cap", "undecodable"]))
    if kind == "repeat":
        key = draw(st.sampled_from(QUERY_OPTIONS))
        return f"{key}=1&{key}=1"
    if kind == "unknown":
        key = draw(WORDS.filter(lambda w: w not in QUERY_OPTIONS))
        return f"{urllib.parse.quote(key)}=1"
    if kind == "cap":
        expansion = draw(st.integers(2, 1000))
        sync = draw(st.integers(1000 // expansion + 1, 10_000))
        return f"expansion={expansion}&sync_work_ms={sync}&task_delay_ms=0"
    if kind == "undecodable":
        return draw(st.sampled_from(["sync_work_ms=%FF", "a=%C3%28", "%FE=1", "expansion=%80"]))
    option = draw(st.sampled_from(QUERY_NUMERIC))
    return f"{option.name}={urllib.parse.quote(draw(bad_text(option)))}"


@settings(max_examples=30, **SETTINGS)
@given(query=bad_query())
def test_bad_queries_are_a_400(server, query):
    raw = f"GET /doWork?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    status, body, seconds = http(server.port, raw)
    assert status == 400 and seconds < 1.0, (query, status, body)
    assert_4xx_json(status, body, raw)
    OUTCOMES["400 (query)"] += 1


BAD_CRITICALITY = st.one_of(
    st.sampled_from(["", "urgent", "critical, sheddable", "SHEDDABLE_PLUS", "0", "critica l"]),
    WORDS.filter(lambda w: w not in ("critical", "sheddable")),
)


@settings(max_examples=15, **SETTINGS)
@given(value=BAD_CRITICALITY)
def test_a_bad_criticality_header_is_a_400_naming_it(server, value):
    raw = (
        f"GET /doWork HTTP/1.1\r\nHost: 127.0.0.1\r\nHammerlab-Criticality: {value}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    status, body, seconds = http(server.port, raw)
    assert status == 400 and seconds < 1.0, (value, status, body)
    assert_4xx_json(status, body, raw)
    assert b"Hammerlab-Criticality: must be critical or sheddable" in body, body
    OUTCOMES["400 (criticality header)"] += 1


FAULT_FIELD_VALUES = {
    "rate": st.one_of(st.floats(1.0001, 1e300), st.floats(-1e300, -0.0001), st.just("0.5"), st.just(True)),
    "duration_s": st.one_of(st.floats(86_400.01, 1e308), st.floats(-1e9, 0), st.just("5"), st.just([5])),
    "delay_ms": st.one_of(st.just(0), st.floats(600_000.1, 1e300), st.floats(-1e9, -0.001), st.just(False)),
    "status": st.one_of(st.just(0), st.integers(-10, 499), st.integers(600, 10**6), st.just(503.0)),
}


@st.composite
def bad_fault_body(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["field", "field", "field", "nokind", "badkind", "extra", "raw"]))
    if kind == "raw":
        return draw(
            st.sampled_from(
                [
                    b'{"kind": "error", "rate": NaN}',
                    b'{"kind": "error", "kind": "slow"}',
                    b'{"kind": "slow", "delay_ms": Infinity}',
                    b"[" * 5000 + b"]" * 5000,
                    b"\xff\xfe{}",
                    b"",
                    b'{"kind": "error"',
                ]
            )
        )
    if kind == "nokind":
        return json.dumps({"duration_s": draw(st.integers(1, 100))}).encode()
    if kind == "badkind":
        wrong = st.one_of(WORDS.filter(lambda w: w not in KINDS), st.integers(), st.none())
        return json.dumps({"kind": draw(wrong)}).encode()
    if kind == "extra":
        fault_kind = draw(st.sampled_from(KINDS))
        key = draw(WORDS.filter(lambda w: w not in {"kind", *FAULT_FIELD_VALUES}))
        return json.dumps({"kind": fault_kind, key: 1, "duration_s": 5}).encode()
    field = draw(st.sampled_from(sorted(FAULT_FIELD_VALUES)))
    fault_kind = draw(st.sampled_from([k for k in KINDS if field in KEYS[k]]))
    body: dict[str, object] = {"kind": fault_kind, field: draw(FAULT_FIELD_VALUES[field])}
    if fault_kind == "outage" and field != "duration_s":
        body["duration_s"] = 5
    return json.dumps(body).encode()


@st.composite
def bad_config_body(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["value", "value", "not_runtime", "duration", "empty", "cap", "shedding"]))
    if kind == "shedding":  # above the server's max_lag_ms (70)
        return json.dumps({"sheddable_lag_ms": draw(st.floats(70.001, 60_000))}).encode()
    if kind == "not_runtime":
        option = draw(st.sampled_from([o.name for o in OPTIONS if not o.runtime]))
        return json.dumps({option: 1}).encode()
    if kind == "duration":
        value = draw(st.one_of(st.floats(86_400.01, 1e308), st.floats(-1e9, 0), st.just("10")))
        return json.dumps({"sync_work_ms": 5, "duration_s": value}).encode()
    if kind == "empty":
        return draw(st.sampled_from([b"{}", b'{"duration_s": 5}', b"[]", b"null", b"5"]))
    if kind == "cap":
        expansion = draw(st.integers(2, 1000))
        sync = draw(st.integers(1000 // expansion + 1, 10_000))
        return json.dumps({"expansion": expansion, "sync_work_ms": sync}).encode()
    name = draw(st.sampled_from([o.name for o in OPTIONS if o.runtime and o.kind is not bool]))
    option = next(o for o in OPTIONS if o.name == name)
    wrong = st.one_of(
        st.floats(float(option.high or 0) + 1, 1e300) if option.high is not None else st.just(-1),
        st.floats(-1e300, float(option.low or 0) - 0.001),
        st.just(str(option.low or 1)),
        st.just(True),
        *([] if option.nullable else [st.just(None)]),  # null is "none" for a nullable option
    )
    return json.dumps({name: draw(wrong)}).encode()


@st.composite
def bad_admin_request(draw: st.DrawFn) -> bytes:
    path = draw(st.sampled_from(["/admin/faults", "/admin/config"]))
    body = draw(bad_fault_body() if path == "/admin/faults" else bad_config_body())
    content_type = "application/json"
    extra = ""
    twist = draw(st.sampled_from(["none"] * 6 + ["type", "origin", "host"]))
    if twist == "type":
        content_type = draw(
            st.sampled_from(["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
        )
    elif twist == "origin":
        extra = (
            "Origin: "
            + draw(st.sampled_from(["http://evil.example", "null", "http://127.0.0.1.evil.example"]))
            + "\r\n"
        )
    host = (
        "127.0.0.1"
        if twist != "host"
        else draw(st.sampled_from(["evil.example", "localhost.evil", "10.0.0.1:3000"]))
    )
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n{extra}"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


@settings(max_examples=35, **SETTINGS)
@given(raw=bad_admin_request())
def test_bad_admin_requests_are_a_4xx(server, raw):
    status, body, _ = http(server.port, raw)
    assert_4xx_json(status, body, raw)
    OUTCOMES[f"{status} (admin)"] += 1


@st.composite
def malformed_http(draw: st.DrawFn) -> bytes:
    kind = draw(
        st.sampled_from(["not_http", "line", "version", "length", "chunk", "headers", "big", "coding"])
    )
    post = b"POST /admin/faults HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    if kind == "not_http":
        first = draw(st.integers(0, 255).filter(lambda b: not 65 <= b <= 90))
        return bytes([first]) + draw(st.binary(max_size=60)) + b"\r\n\r\n"
    if kind == "line":
        words = draw(
            st.lists(st.text("ABCXYZ/?ab", min_size=1, max_size=6), min_size=1, max_size=5).filter(
                lambda w: len(w) != 3
            )
        )
        return ("G" + " ".join(words)).encode() + b"\r\n\r\n"
    if kind == "version":
        version = draw(
            st.sampled_from(
                ["HTTP/2.0", "HTTP/0.9", "HTTP/1.x", "HTTP/1.1.1", "HTTPS/1.1", "http/1.1", "HTTP/1.-1"]
            )
        )
        return f"GET /ping {version}\r\nHost: 127.0.0.1\r\n\r\n".encode()
    if kind == "length":
        value = draw(
            st.one_of(
                st.sampled_from(["-1", "+2", "2_0", "0x2", "2.0", "", "abc"]),
                st.integers(65_537, 10**30).map(str),
            )
        )
        return post + f"Content-Length: {value}\r\n\r\n{{}}".encode()
    if kind == "chunk":
        size = draw(
            st.one_of(
                st.sampled_from(["zz", "-5", "10000000000000000", "0x2", " ", "2;" + "x" * 9000]),
                st.integers(16**16, 16**20).map(lambda n: f"{n:x}"),
            )
        )
        return post + f"Transfer-Encoding: chunked\r\n\r\n{size}\r\n{{}}\r\n0\r\n\r\n".encode()
    if kind == "coding":
        coding = draw(st.sampled_from(["gzip", "chunked, gzip", "identity", "chunk"]))
        return post + f"Transfer-Encoding: {coding}\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n".encode()
    if kind == "headers":
        count = draw(st.integers(101, 400))
        return b"GET /ping HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(count)) + b"\r\n"
    size = draw(st.integers(16_400, 200_000))
    return b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * size + b"\r\n\r\n"


@settings(max_examples=35, **SETTINGS)
@given(raw=malformed_http())
def test_malformed_http_is_a_4xx_and_the_connection_closes(server, raw):
    status, body, seconds = http(server.port, raw)
    assert_4xx_json(status, body, raw)
    assert seconds < 1.0, f"{seconds:.2f} s for {raw[:80]!r}"  # answered at once, not by a timeout
    OUTCOMES[f"{status} (raw HTTP)"] += 1


def test_the_server_survived_every_case(server):
    """Runs last in this module: the server still answers, and never answered 500."""
    assert requests_ping(server.port) == 200
    output = server.output()
    assert "Traceback" not in output, output[-2000:]
    stats = json.loads(
        http(server.port, b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")[1]
    )
    outcomes = ("completed", "rejected", "errors", "bad_requests", "abandoned")
    assert stats["requests_total"] == sum(stats[f"{name}_total"] for name in outcomes)
    assert stats["requests_total"] == stats["bad_requests_total"]  # no generated /doWork was accepted


def requests_ping(port: int) -> int:
    return http(port, b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")[0]
