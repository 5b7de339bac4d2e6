"""benchmarks/adaptive.py's verdicts from fixture numbers (the benchmark itself takes many minutes):
each target (issue 13's, with issue 20's 0.95 per capacity phase) passes when the numbers reach it and
is missed when they do not."""

from __future__ import annotations

from benchmarks.adaptive import (
    ADAPTIVE,
    CAPACITY_SCENARIOS,
    HAMMER,
    PHASES,
    STATIC_CAPS,
    Measured,
    cap_label,
    evaluate,
    plot_limit,
)


def measured(**changes) -> Measured:
    caps = {cap_label(cap): 40.0 + cap for cap in STATIC_CAPS}  # the best static cap: 32, at 72/s
    phases = {s: {p: {**caps, ADAPTIVE: 70.0} for p in PHASES} for s in CAPACITY_SCENARIOS}
    base = Measured(
        cliff={**caps, ADAPTIVE: 70.0, "aimd": 60.0},
        cliff_errors=0,
        recovery={ADAPTIVE: 0.1, HAMMER: 0.2},
        phases=phases,
    )
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def verdicts(m: Measured) -> dict[str, str]:
    return {check.target: check.verdict for check in evaluate(m)}


def test_every_target_passes_on_good_numbers():
    checks = evaluate(measured())
    assert len(checks) == 3 + len(CAPACITY_SCENARIOS) * len(PHASES)
    assert all(check.verdict == "PASS" for check in checks), [c for c in checks if c.verdict != "PASS"]
    assert "cap 32 (72.0/s)" in checks[0].required and "aimd 60.0" in checks[0].beside


def test_each_target_misses_on_its_own():
    m = measured()
    m.cliff[ADAPTIVE] = 0.94 * 72.0
    assert verdicts(m)["2x C: SLO goodput / best static cap"] == "MISS"
    assert verdicts(measured(cliff_errors=1))["2x C: server-side errors"] == "MISS"
    outage = "after a 10 s outage: back to 90 % of offered"
    assert verdicts(measured(recovery={ADAPTIVE: 1.1, HAMMER: 2.0}))[outage] == "MISS"  # over 1 s
    assert verdicts(measured(recovery={ADAPTIVE: 0.5, HAMMER: 0.25}))[outage] == "MISS"  # slower than hammer
    assert verdicts(measured(recovery={ADAPTIVE: "never", HAMMER: 0.25}))[outage] == "MISS"
    m = measured()
    m.phases["capacity-up"]["changed"][ADAPTIVE] = 0.94 * 72.0  # issue 20's bar is 0.95 (issue 13's 0.9)
    v = verdicts(m)
    assert v["capacity-up, changed phase: SLO goodput / best static cap"] == "MISS"
    assert v["capacity, changed phase: SLO goodput / best static cap"] == "PASS"


def test_a_missing_measurement_is_a_miss():
    m = measured()
    del m.phases["capacity"]["restored"][ADAPTIVE]
    assert verdicts(m)["capacity, restored phase: SLO goodput / best static cap"] == "MISS"
    assert verdicts(measured(cliff_errors=None))["2x C: server-side errors"] == "MISS"


def test_the_limit_plot_is_an_svg_with_the_static_caps(tmp_path):
    path = tmp_path / "limit.svg"
    series = [(100.0 + i * 0.25, 10.0 + i % 7) for i in range(200)]
    plot_limit(path, "capacity", series, (110.0, 130.0), {"before": 32, "changed": 16, "restored": 32})
    text = path.read_text()
    assert text.startswith("<?xml") and "best static cap" in text


def test_the_capacity_up_scenario_halves_the_work_and_plans_like_capacity():
    import pytest

    from comparison.config import WORK_FACTORS, ConfigError, RunConfig, build_plan

    assert WORK_FACTORS == {"capacity": 2.0, "capacity-up": 0.5}
    plan = build_plan(RunConfig("capacity-up", ("AdaptiveClient",), 50), 90.0, 180.0)
    assert plan.capacity_change_s == 20 and plan.capacity_change_at_s == 15
    assert plan.reduced_capacity_rps == 180.0 and plan.offered_rps == pytest.approx(99.0)
    with pytest.raises(ConfigError, match="too short for the capacity-up scenario"):
        RunConfig("capacity-up", ("AdaptiveClient",), 20)
