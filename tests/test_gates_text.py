"""Gates on text columns (issue 18, item 12): `verdict == "stuck"` and `!=` against a quoted string are
judged as text; any other operator, an unquoted word, a number or arithmetic on a text column is one
line naming the column and what is allowed, exit 2, before anything runs. All in-process."""

from __future__ import annotations

import contextlib
import io
from dataclasses import replace

import pytest

from comparison.__main__ import main
from comparison.gates import TEXT_COLUMNS, GateError, judge, judge_all, parse_gate
from comparison.metastable import NOT_BACK
from comparison.summary import COLUMNS, Summary


def summary(client: str = "NaiveRetryClient", **values: object) -> Summary:
    base = Summary(
        client=client, scenario="metastable", capacity_rps=90.0, offered_rps=81.0, slo_ms=1000.0,
        slo_goodput_rps=40.0, slo_attainment=0.5, goodput_rps=45.0, launched=4000, ok=2000,
        server_errors=2000, server_error_kinds="timeout=2000", shed=0, shed_kinds="", unfinished=0,
        skipped=0, deferred=None, replayed=None, expired=None, kept=None, lost=2000, p50_ms=900.0,
        p95_ms=1000.0,
        p99_ms=1000.0, p999_ms=1000.0, max_ms=1000.0, max_client_concurrent=240, server_max_lag_ms=900.0,
        server_p95_lag_ms=800.0, server_max_sockets=68, server_max_in_flight=60, recovery_s="never",
        recovered="no", verdict="stuck",
    )  # fmt: skip
    return replace(base, **values)


def test_every_text_column_of_the_summary_is_known_as_text():
    texts = {name for name in COLUMNS if isinstance(getattr(summary(), name), str) and name != "recovery_s"}
    assert texts <= TEXT_COLUMNS, texts - TEXT_COLUMNS  # recovery_s is a number or "never" (infinite)


@pytest.mark.parametrize(
    ("text", "row", "passed", "detail"),
    [
        ('verdict == "stuck"', {}, True, "verdict = 'stuck'"),
        ("verdict == 'stuck'", {"verdict": "quick"}, False, "verdict = 'quick'"),
        ('verdict != "stuck"', {"verdict": NOT_BACK}, True, "verdict = 'not-back'"),
        ('"stuck" != verdict', {}, False, "verdict = 'stuck'"),
        ('recovered == "yes"', {"recovered": "yes"}, True, "recovered = 'yes'"),
        ('NaiveRetryClient: shed_kinds == ""', {}, True, "shed_kinds = ''"),
        ('client != "AdaptiveClient"', {}, True, "client = 'NaiveRetryClient'"),
        ('verdict == "stuck"', {"scenario": "steady", "verdict": None}, False, "verdict has no value"),
    ],
)
def test_a_text_column_is_judged_as_text(text, row, passed, detail):
    verdict = judge(parse_gate(text), summary(**row))
    assert verdict.passed is passed
    assert detail in verdict.detail and "\n" not in verdict.line


def test_text_and_numeric_gates_judge_together_per_class():
    gates = [parse_gate('verdict != "stuck"'), parse_gate("RetryClient: slo_goodput_rps >= 0.5*capacity_rps")]
    rows = [summary(), summary("RetryClient", verdict="slow", recovered="yes", slo_goodput_rps=80.0)]
    verdicts = judge_all(gates, rows, ["NaiveRetryClient", "RetryClient"])
    assert [(v.client, v.passed) for v in verdicts] == [
        ("NaiveRetryClient", False), ("RetryClient", True), ("RetryClient", True),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ('verdict >= "stuck"', "verdict is a text column: only == or != against a quoted string"),
        ('verdict < "stuck"', "verdict is a text column"),
        ("verdict == stuck", 'e.g. verdict == "stuck"'),  # an unquoted word
        ("verdict == 1", "(quick, slow, not-back, stuck)"),  # a number
        ("1 != verdict", "verdict is a text column"),
        ("verdict + 1 > 0", "verdict is a text column"),  # arithmetic
        ('-verdict == "stuck"', "verdict is a text column"),
        ("client == scenario", "client is a text column: only == or != against a quoted string, e.g."),
        ('recovered > "no"', "(yes, no)"),
        ('server_error_kinds >= "timeout"', "server_error_kinds is a text column"),
        ('verdict == "stuk"', "'stuk' is not a value of verdict; use one of quick, slow, not-back, stuck"),
        ('recovered == "maybe"', "use one of yes, no"),
        ('p99_ms > "a"', "'\"a\"' is not a number"),  # a quoted string against a numeric column
    ],
)
def test_anything_else_on_a_text_column_is_one_line(text, said):
    with pytest.raises(GateError) as error:
        parse_gate(text)
    assert said in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("check", ['verdict >= "stuck"', "verdict == stuck", "verdict == 1"])
def test_the_runner_refuses_it_before_anything_runs(tmp_path, check):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["--scenario", "metastable", "--check", check, "--results-dir", str(tmp_path)])
    assert code == 2
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1 and "--check" in lines[0] and "verdict is a text column" in lines[0], lines
    assert list(tmp_path.iterdir()) == []
