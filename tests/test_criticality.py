"""Criticality on the client: the mix's labels, the option's parser, the gate that refuses sheddable
calls first (throttle and adaptive limit), and the ledger's split. Fake time only."""

import gevent
import pytest

from locust_plugin.client_stats import criticality_parts
from locust_plugin.ledger import CallLedger
from locust_plugin.mitigation_rows import MitigationRow, sum_rows
from locust_plugin.values import criticality_mix
from locust_plugin.web_tables import mitigation_rows
from mitigations import AdaptiveLimit, PipelineEvents, Throttle, ThrottleConfig
from mitigations.adaptive import AdaptiveLimitConfig, Aimd, AimdConfig
from mitigations.admission import Entry, FifoGate
from mitigations.core import Outcome, ServiceUnavailable, ThrottleRejected
from mitigations.criticality import (
    CRITICAL,
    HEADER,
    SHEDDABLE,
    CriticalityMix,
    CriticalityStamper,
    criticality_of,
    reserved_slots,
)
from tests.policy_kit import HeldCalls, SteppedClock, make_call, run


def labelled(clock, criticality: str, path: str = "/doWork"):
    call = make_call(clock, path)
    call.headers = {HEADER: criticality}
    return call


def bound(policy, clock):
    policy.bind(clock, PipelineEvents())
    return policy


# -- the label and the mix --------------------------------------------------------------------------


def test_a_call_without_the_header_or_with_an_unknown_value_is_critical():
    assert criticality_of({}) == CRITICAL
    assert criticality_of({"hammerlab-criticality": "SHEDDABLE "}) == SHEDDABLE
    assert criticality_of({HEADER: "batch"}) == CRITICAL
    assert criticality_of({"X-Other": "sheddable"}) == CRITICAL


@pytest.mark.parametrize("share", [0.0, 0.3, 0.5, 0.77, 1.0])
def test_the_mix_labels_exactly_its_share_of_every_run_of_calls(share):
    mix = CriticalityMix(share)
    labels = [mix.of(n) for n in range(1000)]
    assert labels.count(CRITICAL) == round(1000 * share)
    # evenly spread: any 100 consecutive calls hold the share within one call
    assert all(abs(labels[i : i + 100].count(CRITICAL) - 100 * share) <= 1 for i in range(0, 900, 7))


def test_the_stamper_keeps_a_label_the_call_already_has():
    stamper = CriticalityStamper(CriticalityMix(0.0))
    mine = {HEADER: "critical"}
    stamper.stamp(mine)
    fresh: dict[str, str] = {}
    stamper.stamp(fresh)
    assert mine == {HEADER: "critical"} and fresh == {HEADER: "sheddable"}


@pytest.mark.parametrize(
    "text",
    [
        "critical=1.5",
        "critical=-0.1",
        "critical=",
        "sheddable=0.3",
        "0.3",
        "critical=nan",
        "critical=0_3",
        "critical=0.3;x",
    ],
)
def test_a_bad_mix_is_one_line_naming_the_value(text):
    with pytest.raises(ValueError) as caught:
        criticality_mix(text)
    message = str(caught.value)
    assert "\n" not in message and "critical=SHARE" in message and "0 to 1" in message


def test_good_mixes_parse():
    assert criticality_mix("critical=0.3") == (0.3,)
    assert criticality_mix(" Critical = 1 ") == (1.0,)
    assert criticality_mix("off") == () and criticality_mix("") == ()
    with pytest.raises(ValueError, match="critical_share"):
        CriticalityMix(1.2)


# -- the gate ---------------------------------------------------------------------------------------------


def test_reserved_slots_are_the_critical_share_of_the_limit():
    assert [reserved_slots(limit, 0.3) for limit in (1, 3, 5, 10, 20)] == [0, 1, 2, 3, 6]
    assert FifoGate(10, reserve=0.3).sheddable_limit == 7
    assert FifoGate(None, reserve=0.3).sheddable_limit is None


def test_cancel_mode_refuses_sheddable_calls_first_and_admits_critical_up_to_the_limit():
    clock = SteppedClock()
    throttle = bound(Throttle(ThrottleConfig(max_concurrent=10)), clock)
    throttle.reserve_for_critical(0.3)
    wire = HeldCalls(clock)
    sheddable = [run(throttle, labelled(clock, SHEDDABLE, f"/s{i}"), wire) for i in range(9)]
    assert throttle.in_flight == 7 and sum(g.ready() for g in sheddable) == 2  # 3 slots kept back
    assert all(isinstance(g.value.error, ThrottleRejected) for g in sheddable if g.ready())
    critical = [run(throttle, labelled(clock, CRITICAL, f"/c{i}"), wire) for i in range(4)]
    assert throttle.in_flight == 10 and [g.ready() for g in critical] == [False, False, False, True]
    wire.release(1)  # a sheddable call ends: its slot is below the reserve, so either class may take it
    assert run(throttle, labelled(clock, CRITICAL, "/c4"), wire).ready() is False
    assert run(throttle, labelled(clock, SHEDDABLE, "/s9"), wire).value.kind == "shed:throttle"
    assert wire.peak == 10


def test_without_a_reserve_sheddable_calls_take_every_slot_as_before():
    clock = SteppedClock()
    throttle = bound(Throttle(ThrottleConfig(max_concurrent=4)), clock)
    wire = HeldCalls(clock)
    calls = [run(throttle, labelled(clock, SHEDDABLE, f"/s{i}"), wire) for i in range(5)]
    assert throttle.in_flight == 4 and [g.ready() for g in calls] == [False] * 4 + [True]


def test_queued_critical_calls_are_served_before_queued_sheddable_ones():
    clock = SteppedClock()
    throttle = bound(
        Throttle(ThrottleConfig(max_concurrent=2, mode="queue", queue_size=10, queue_timeout=10)), clock
    )
    throttle.reserve_for_critical(0.5)  # sheddable calls only while fewer than 1 of the 2 slots are held
    wire = HeldCalls(clock)
    greenlets = [
        run(throttle, labelled(clock, p[1], p[0]), wire)
        for p in (("/s0", SHEDDABLE), ("/c0", CRITICAL), ("/s1", SHEDDABLE), ("/s2", SHEDDABLE))
    ]
    assert wire.order == ["/s0", "/c0"] and throttle.queued == 2
    greenlets += [run(throttle, labelled(clock, CRITICAL, p), wire) for p in ("/c1", "/c2")]
    assert throttle.queued == 4  # both slots held: the critical newcomers wait, but ahead of /s1, /s2
    wire.release()  # /s0 ends: the critical line first, though /s1 queued before /c1
    assert wire.order[-1] == "/c1"
    wire.release()  # /c0 ends
    assert wire.order[-1] == "/c2" and throttle.queued == 2
    wire.release()  # /c1 ends: one slot held, not below the sheddable limit of 1: /s1 still waits
    assert wire.order[-1] == "/c2" and throttle.queued == 2
    wire.release()  # /c2 ends: the sheddable line, one at a time
    assert wire.order[-1] == "/s1" and throttle.in_flight == 1 and throttle.queued == 1
    wire.release(2)
    assert wire.order == ["/s0", "/c0", "/c1", "/c2", "/s1", "/s2"]
    assert all(g.value.ok for g in greenlets) and throttle.in_flight == 0 and throttle.queued == 0


def test_with_no_reserve_a_freed_slot_still_goes_to_the_critical_line_first():
    clock = SteppedClock()
    throttle = bound(
        Throttle(ThrottleConfig(max_concurrent=1, mode="queue", queue_size=10, queue_timeout=10)), clock
    )
    wire = HeldCalls(clock)
    greenlets = [run(throttle, labelled(clock, c, p), wire)
                 for p, c in (("/x", CRITICAL), ("/s", SHEDDABLE), ("/c", CRITICAL))]  # fmt: skip
    assert throttle.queued == 2
    wire.release(3)
    assert wire.order == ["/x", "/c", "/s"] and all(g.value.ok for g in greenlets)


def test_a_sheddable_waiter_that_times_out_leaves_no_trace():
    clock, gate = SteppedClock(), FifoGate(2, reserve=0.5)
    assert gate.try_enter(sheddable=True) and not gate.try_enter(sheddable=True)
    waiter = gevent.spawn(gate.enter, clock, 1.0, True)
    gevent.idle()
    assert gate.waiting == 1 and gate.waiting_sheddable == 1 and gate.try_enter()  # critical passes it
    clock.advance(1.0)
    assert waiter.value is Entry.TIMED_OUT and gate.waiting == 0 and gate.waiting_sheddable == 0


def test_the_adaptive_limit_keeps_its_reserve_as_the_limit_moves():
    clock = SteppedClock()
    aimd = Aimd(AimdConfig(initial_limit=10, min_limit=1, max_limit=10, backoff_ratio=0.5))
    limiter = bound(AdaptiveLimit(aimd, AdaptiveLimitConfig()), clock)
    limiter.reserve_for_critical(0.3)
    wire = HeldCalls(clock)
    first = [run(limiter, labelled(clock, SHEDDABLE, f"/s{i}"), wire) for i in range(8)]
    assert limiter.in_flight == 7 and first[-1].value.kind == "shed:adaptive"
    wire.release(1, error=ServiceUnavailable())  # a drop halves the limit to 5, 2 of it reserved
    assert limiter.limit == 5 and limiter.gate.sheddable_limit == 3 and limiter.in_flight == 6
    assert run(limiter, labelled(clock, CRITICAL, "/c"), wire).value.kind == "shed:adaptive"  # 6 > 5
    wire.release(2)  # 4 held: over the sheddable limit, under the limit
    assert run(limiter, labelled(clock, SHEDDABLE, "/s"), wire).value.kind == "shed:adaptive"
    assert run(limiter, labelled(clock, CRITICAL, "/c"), wire).ready() is False


# -- the ledger's split --------------------------------------------------------------------------------------


def test_the_ledger_splits_by_criticality_and_keeps_the_identity_in_each_class():
    clock = SteppedClock()
    ledger = CallLedger(slo_ms=100.0, split=True)
    plan = [(CRITICAL, 200, 0.05), (CRITICAL, 200, 0.5), (SHEDDABLE, 200, 0.01), (SHEDDABLE, None, 0.0)]
    for criticality, status, takes in plan:
        call = labelled(clock, criticality)
        ledger.launch(call)
        error = None if status else ThrottleRejected()
        ledger.finish(Outcome(call=call, finished_at=call.launched_at + takes, status=status, error=error))
    unfinished = labelled(clock, SHEDDABLE)
    ledger.launch(unfinished)
    ledger.abandon(unfinished)
    critical, sheddable = ledger.split[CRITICAL], ledger.split[SHEDDABLE]
    assert (critical.launched, critical.ok, critical.slo_ok, critical.shed) == (2, 2, 1, 0)
    assert (sheddable.launched, sheddable.ok, sheddable.slo_ok, sheddable.shed, sheddable.unfinished) == (
        3, 1, 1, 1, 1,
    )  # fmt: skip
    for part in (critical, sheddable, ledger):
        assert part.launched == part.ok + part.server_errors + part.shed + part.unfinished
    assert ledger.launched == critical.launched + sheddable.launched
    assert critical.histogram.get_total_count() == 2 and sheddable.histogram.get_total_count() == 1
    assert CallLedger(slo_ms=100.0).split is None


def test_the_split_reaches_the_csv_and_the_tab_and_sums_across_workers():
    clock = SteppedClock()
    rows = []
    for worker, takes in (("w1", 0.01), ("w2", 0.2)):
        ledger = CallLedger(slo_ms=100.0, split=True)
        for criticality in (CRITICAL, SHEDDABLE, SHEDDABLE):
            call = labelled(clock, criticality)
            ledger.launch(call)
            ledger.finish(Outcome(call=call, finished_at=call.launched_at + takes, status=200))
        parts = criticality_parts(ledger.split)
        rows.append(
            MitigationRow(
                timestamp=1.0,
                elapsed_s=1.0,
                worker=worker,
                client="ThrottledClient",
                launched_total=3,
                slo_ms=100.0,
                criticality=parts,
            )
        )
    total = sum_rows(rows, timestamp=2.0, elapsed_s=2.0).csv_row()
    assert (total["critical_launched_total"], total["critical_ok_total"], total["critical_slo_ok_total"]) == (
        "2", "2", "1",
    )  # fmt: skip
    assert (total["sheddable_launched_total"], total["sheddable_slo_ok_total"]) == ("4", "2")
    assert 199.0 <= float(total["critical_p99_ms"]) <= 201.0  # w2's 200 ms: the histograms were merged
    assert MitigationRow(timestamp=1.0, elapsed_s=1.0, worker="local", client="X").csv_row()[
        "critical_ok_total"
    ] == ""  # no mix: empty cells  # fmt: skip
    table = mitigation_rows(rows, now=3.0)
    assert [r["client"] for r in table] == ["ThrottledClient", "ThrottledClient · critical",
                                            "ThrottledClient · sheddable"] * 2  # fmt: skip
    assert table[1]["calls"] == "1 / 0 / 0 / 0 / 0 (1)" and table[1]["slo"] == "100.0% within 100 ms"
    assert table[2]["breaker"] == "" and table[2]["latency"].startswith("10.0 /")


def test_a_limiter_told_to_ignore_criticality_admits_sheddable_calls_as_critical():
    clock = SteppedClock()
    throttle = bound(Throttle(ThrottleConfig(max_concurrent=4)), clock)
    throttle.reserve_for_critical(0.5)
    throttle.ignore_criticality()
    wire = HeldCalls(clock)
    calls = [run(throttle, labelled(clock, SHEDDABLE, f"/s{i}"), wire) for i in range(5)]
    assert throttle.in_flight == 4 and [g.ready() for g in calls] == [False] * 4 + [True]
