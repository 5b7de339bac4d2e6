"""benchmarks/criticality.py's verdicts, from fixture summaries: each issue-22 criticality target passes
when the numbers reach it and is missed when they do not (the benchmark itself takes minutes)."""

from __future__ import annotations

from dataclasses import replace

from benchmarks.criticality import Stages, evaluate
from comparison.summary import Summary

BASE = Summary("AdaptiveClient", "cliff", 90.0, 180.0, 1000.0, 80.0, 0.45, 80.0, 1800, 900, 0, "", 900, "",
               0, 0, None, None, None, None, 900, 50.0, 60.0, 800.0, 900.0, 1000.0, 10, 20.0, 10.0,
               10, 5, None)  # fmt: skip


def summary(goodput: float, critical: float) -> Summary:
    split = (("critical_slo_goodput_rps", 27.0), ("critical_slo_attainment", critical),
             ("critical_p99_ms", 200.0), ("sheddable_slo_goodput_rps", 50.0),
             ("sheddable_slo_attainment", 0.4), ("sheddable_p99_ms", 210.0))  # fmt: skip
    return replace(BASE, slo_goodput_rps=goodput, by_criticality=split)


def test_both_targets_pass_when_the_numbers_reach_them_and_the_contrast_is_shown():
    checks = evaluate(Stages(summary(80.0, 0.6), summary(77.0, 0.995)))
    assert [c.passed for c in checks] == [True, True, None]
    assert checks[0].measured == "0.995" and "sheddable 0.400" in checks[0].beside
    assert checks[1].measured == "77.0/s = 0.96 x" and checks[2].measured == "0.600"
    assert "--priority-shedding" in checks[0].client


def test_each_target_is_missed_when_the_numbers_fall_short_or_are_missing():
    assert [c.passed for c in evaluate(Stages(summary(80.0, 0.6), summary(77.0, 0.98)))][:2] == [
        False, True,
    ]  # fmt: skip
    assert [c.passed for c in evaluate(Stages(summary(80.0, 0.6), summary(75.0, 0.995)))][:2] == [
        True, False,
    ]  # fmt: skip
    missing = evaluate(Stages(None, replace(BASE, by_criticality=())))
    assert [c.passed for c in missing] == [False, False, None] and missing[0].measured == "not measured"
