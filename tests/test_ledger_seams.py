"""The ledger identity where features meet: hedging and the criticality split, over any pipeline.

`test_ledger_identity` draws pipelines with the default options, where an adaptive hedge never fires
(it waits for 20 latencies) and no call carries a criticality. Here every pipeline hedges on a fixed
delay and the class runs with `--criticality-mix`, so the sub-ledgers fill. The same reference model
(one call, one column, from its own events) must then hold for the totals and for each criticality on
its own, and the sub-ledgers must add up to the totals, at every step of the fake clock and at the end.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from types import SimpleNamespace

import gevent
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from locust_plugin.ledger import CallLedger
from locust_plugin.pipelines import DEFER_SOURCES, ORDER
from locust_plugin.runtime import ClientRuntime
from mitigations.core import Call, ServiceUnavailable
from mitigations.criticality import CRITICALITIES, CriticalityMix, criticality_of
from tests.policy_kit import SteppedClock
from tests.test_ledger_identity import (
    ACTIONS,
    SLO_MS,
    Model,
    Phase,
    Requests,
    ScriptedTransport,
    ledger_columns,
    options,
    runtime_for,
    settle_disk,
    watch,
)

EXAMPLES = 30
STEP_S = 0.05
COUNTS = ("launched", "ok", "slo_ok", "server_errors", "shed", "unfinished", "pending", "kept")
tried: Counter[str] = Counter()


def restricted(model: Model, paths: set[str]) -> Model:
    """The reference model of `paths` alone: what one criticality's sub-ledger must say."""
    model.settle()
    return Model(
        model.slo_ms,
        launched_at={p: t for p, t in model.launched_at.items() if p in paths},
        greenlets={p: g for p, g in model.greenlets.items() if p in paths},
        phase={p: v for p, v in model.phase.items() if p in paths},
        deferred={p for p in model.deferred if p in paths},
        final={p: v for p, v in model.final.items() if p in paths},
        closed=model.closed,
    )


def check_split(runtime: ClientRuntime, model: Model, labels: dict[str, str]) -> None:
    """The identity in the totals and in each sub-ledger, each against the model, and the parts summed."""
    ledger = runtime.ledger
    assert ledger.split is not None
    running = {p for p, g in model.greenlets.items() if not g.ready()}
    ended = ledger.ok + ledger.server_errors + ledger.shed + ledger.unfinished
    assert ledger.launched == ended + ledger.pending + runtime.concurrent, ledger_columns(ledger)
    assert ledger_columns(ledger) == model.columns()
    for name in CRITICALITIES:
        part: CallLedger = ledger.split[name]
        paths = {p for p, label in labels.items() if label == name}
        in_flight = len(running & paths)
        assert part.launched == (
            part.ok + part.server_errors + part.shed + part.unfinished + part.pending + in_flight
        ), (name, ledger_columns(part))
        assert ledger_columns(part) == restricted(model, paths).columns(), name
    for count in COUNTS:
        assert getattr(ledger, count) == sum(getattr(ledger.split[n], count) for n in CRITICALITIES), count
    for table in ("errors_by_kind", "shed_by_cause"):
        summed: Counter[str] = Counter()
        for name in CRITICALITIES:
            summed.update(getattr(ledger.split[name], table))
        assert +summed == Counter(getattr(ledger, table)), table


def pipeline_names(draw: st.DrawFn) -> tuple[str, ...]:
    """Always one hedge (budgeted or naive), any subset of the rest."""
    chosen = {name for name in ORDER if "hedge" not in name and draw(st.booleans())}
    chosen.add(draw(st.sampled_from(("hedge", "naive-hedge"))))
    if "defer" in chosen and not chosen & set(DEFER_SOURCES):
        chosen.add(draw(st.sampled_from(DEFER_SOURCES)))
    return tuple(name for name in ORDER if name in chosen)


@st.composite
def runs(draw: st.DrawFn):
    names = pipeline_names(draw)
    answer = st.tuples(st.sampled_from(ACTIONS), st.sampled_from((0.0, 0.02, 0.15, 0.6)))
    script = draw(st.lists(answer, min_size=1, max_size=8))
    launches = draw(st.lists(st.sampled_from((0, 1, 2, 6)), min_size=1, max_size=20))  # steps first
    run_steps = draw(st.integers(0, 30))
    drain_steps = draw(st.sampled_from((0, 4, 16)))
    values = options(draw)
    values.update(
        hedge_delay_ms=draw(st.sampled_from(("40", "100", "300"))),
        hedge_budget=draw(st.sampled_from(("0", "5", "100"))),
        hedge_pause_ms=draw(st.sampled_from(("0", "2000"))),
        criticality_mix=draw(st.sampled_from(("critical=0", "critical=0.3", "critical=0.5", "critical=1"))),
        shed_sheddable_first=draw(st.sampled_from(("true", "false"))),
        retry_methods="*",
    )
    return names, script, launches, run_steps, drain_steps, values


def tick(runtime: ClientRuntime, model: Model, clock: SteppedClock, labels: dict[str, str]) -> None:
    defer = runtime.defer
    if defer is not None and not defer.closed:
        defer.drain_once()
    clock.advance(STEP_S)
    gevent.idle()
    settle_disk(defer)
    check_split(runtime, model, labels)


@pytest.fixture(scope="module")
def defer_root(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("defer")


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs())
def test_hedged_calls_land_once_in_the_totals_and_in_their_criticality(defer_root, run):
    names, script, launches, run_steps, drain_steps, values = run
    clock = SteppedClock()
    parsed = SimpleNamespace(**values, defer_dir=tempfile.mkdtemp(dir=defer_root))
    mix = CriticalityMix(float(values["criticality_mix"].partition("=")[2]))
    runtime = runtime_for(names, parsed, clock, ScriptedTransport(clock, script), mix)
    tried["runs"] += 1
    tried["+".join(names)] += 1
    model = Model(SLO_MS)
    watch(runtime, model)
    labels: dict[str, str] = {}
    step = 0
    for gap in launches:
        if step > run_steps:
            break
        for _ in range(gap):
            tick(runtime, model, clock, labels)
            step += 1
        path = f"/c{len(model.launched_at)}"
        call = Call("GET", path, launched_at=clock.now())
        model.launched_at[path] = clock.now()
        model.phase[path] = Phase()
        model.greenlets[path] = runtime.launch(call)
        labels[path] = criticality_of(call.headers)  # stamped by the runtime at launch
    runtime.close()
    for _ in range(drain_steps):
        tick(runtime, model, clock, labels)
    runtime.drain(0)
    runtime.drain_deferred(0)
    model.closed = True
    check_split(runtime, model, labels)
    hedge = next(p for name, p in runtime.policies.items() if "hedge" in name)
    tried["hedged"] += hedge.hedged


def test_the_property_hedged_and_split():
    """Runs after the property (file order): the hedges it is about really went out."""
    if not tried:
        pytest.skip("the property did not run in this session")
    assert tried["runs"] >= EXAMPLES // 2
    assert tried["hedged"] > 0
    print(f"\nsplit property: {tried['runs']} runs, {tried['hedged']} hedges sent")


# -- deferral x the split: a recovered call is in the totals only -----------------------------------------


def test_a_recovered_calls_replay_never_lands_in_a_criticality_part(tmp_path):
    """A call an earlier run left on disk is in the totals only (its launch was not counted in any part).
    Its replay used to end a pending call of this run in the part of its label, and that call's own replay
    was then dropped from the part: the part said 503 for a call this run got answered."""
    from locust_plugin.pipelines import BuiltPipeline
    from tests.test_defer import wait_until
    from tests.test_defer_seams import plant, queue

    plant(tmp_path / "T.sqlite", [("GET", "/old", '{"Hammerlab-Criticality": "critical"}', None)])
    clock = SteppedClock()
    pipeline, defer, held = queue(tmp_path, clock, limit=1)
    built = BuiltPipeline(pipeline, {"defer": defer, "throttle": pipeline.policies[1]})
    runtime = ClientRuntime("T", built, Requests(), SLO_MS, CriticalityMix(1.0))  # every fresh call critical
    first = runtime.launch(Call("GET", "/a", launched_at=clock.now()))
    wait_until(lambda: held.inside == 1 and defer.leftovers == 1)
    fresh = runtime.launch(Call("GET", "/fresh", launched_at=clock.now()))  # the slot is taken: deferred
    wait_until(lambda: runtime.ledger.pending == 2)
    held.release(1)
    first.join(timeout=5)
    defer.drain_once()  # the recovered call first (the lower id); it fails on the wire
    wait_until(lambda: held.inside == 1)
    held.release(1, ServiceUnavailable())
    wait_until(lambda: defer.replayed == 1)
    defer.drain_once()  # then this run's call, answered
    wait_until(lambda: held.inside == 1)
    held.release(1)
    wait_until(lambda: defer.replayed == 2)
    fresh.join(timeout=5)
    defer.close()
    ledger, part = runtime.ledger, runtime.ledger.split["critical"]
    assert (ledger.launched, ledger.ok, ledger.server_errors, ledger.pending) == (3, 2, 1, 0)
    assert (part.launched, part.ok, part.server_errors, part.pending) == (2, 2, 0, 0)
