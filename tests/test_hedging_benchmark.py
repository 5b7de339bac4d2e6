"""benchmarks/hedging.py's verdicts, from fixture rows: each issue-22 hedging target passes when the
numbers reach it and is missed when they do not (the benchmark itself takes minutes and is not a test)."""

from __future__ import annotations

from dataclasses import replace

from benchmarks.hedging import Row, Stages, evaluate, main
from comparison.summary import Summary

C = 90.0


def row(client: str, p999: float = 1000.0, received: int = 900, hedged: int | None = None,
        slo_goodput: float = 80.0) -> Row:  # fmt: skip
    base = Summary(client, "tail", C, 45.0, 1000.0, slo_goodput, 1.0, 45.0, 900, 900, 0, "", 0, "",
                   0, 0, None, None, None, None, 0, 50.0, 60.0, 800.0, p999, 1000.0, 10, 20.0, 10.0,
                   10, 5, None)  # fmt: skip
    return Row(base, received, hedged, None if hedged is None else hedged - 1)


def stages(**changes: Row) -> Stages:
    found = Stages(
        tail={"CombinedClient": row("CombinedClient"), "HedgedClient": row("HedgedClient", 250.0, 917, 18)},
        cliff={"HedgedClient": row("HedgedClient", received=920, hedged=20, slo_goodput=81.0),
               "ThrottledClient": row("ThrottledClient", slo_goodput=80.0),
               "NaiveHedgeClient": row("NaiveHedgeClient", received=1750, hedged=850, slo_goodput=40.0)},
    )  # fmt: skip
    for key, value in changes.items():
        stage, client = key.split("__")
        found = replace(found, **{stage: {**getattr(found, stage), client: value}})
    return found


def verdicts(found: Stages) -> list[bool | None]:
    return [check.passed for check in evaluate(found)]


def test_every_target_passes_when_the_numbers_reach_it():
    checks = evaluate(stages())
    assert [c.passed for c in checks] == [True, True, True, True, None]
    assert checks[0].measured == "250 ms = 0.25 x" and "1,000 ms" in checks[0].required
    assert checks[1].measured == "+1.9%" and checks[1].beside.startswith("18 hedges (17 won)")
    assert checks[2].measured.startswith("1.022 x")
    assert checks[4].client == "NaiveHedgeClient" and checks[4].measured.startswith("1.944 x, 850 hedges")
    assert "SLO goodput 40.0/s" in checks[4].beside


def test_each_target_is_missed_when_the_numbers_fall_short():
    assert verdicts(stages(tail__HedgedClient=row("HedgedClient", 301.0, 917, 18)))[0] is False
    assert verdicts(stages(tail__HedgedClient=row("HedgedClient", 250.0, 946, 46)))[1] is False
    assert verdicts(stages(cliff__HedgedClient=row("HedgedClient", received=946, hedged=46,
                                                   slo_goodput=81.0)))[2] is False  # fmt: skip
    assert (
        verdicts(stages(cliff__HedgedClient=row("HedgedClient", received=900, slo_goodput=79.9)))[3] is False
    )
    missing = Stages(tail={}, cliff={})
    assert verdicts(missing) == [False, False, False, False, None]
    assert evaluate(missing)[4].measured == "not measured"


def test_a_bad_option_is_one_line_and_exit_2(capsys):
    assert main(["--quick", "--bogus"]) == 2
    assert capsys.readouterr().err.strip() == "benchmarks/hedging.py: error: unrecognized arguments: --bogus"
