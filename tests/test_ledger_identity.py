"""One ledger identity, whatever the pipeline: every launched call is counted once, in one column.

The thing under test is the accounting (`ClientRuntime` and its `CallLedger`, with the real policies that
`locust_plugin.pipelines` builds), not the wire, so the far end is a scripted fake transport on a fake
clock: no sockets and no sleeping. Hypothesis draws a pipeline in `pipelines.ORDER` order with any subset
of the policies, a transport script (ok, 5xx, 503, 429, a reset before and after the status line, connect
refused, a timeout, a hang), a launch schedule and a stop time. At every step of the clock and at the end:

- the identity holds: launched = ok + server_errors + shed + unfinished + pending + in flight;
- each column equals a small reference model, worked out call by call from what the pipeline announced
  (its `wire`, `shed`, `replayed` and `expired` events) and from how each call's greenlet ended, so each
  logical call is counted once, in the column its own events say;
- a call that reached the server and then failed never ends as a shed, whatever refused its retry.
"""

from __future__ import annotations

import dataclasses
import random
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace

import gevent
import gevent.event
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from locust_plugin.ledger import CallLedger, LatencySummary
from locust_plugin.pipelines import DEFER_SOURCES, ORDER, BuiltPipeline, build_pipeline
from locust_plugin.runtime import ClientRuntime
from mitigations.breaker import CircuitBreaker, CircuitBreakerConfig
from mitigations.core import (
    Call,
    ConnectionReset,
    ConnectRefused,
    DeadlineExceeded,
    Deferred,
    HammerError,
    HttpServerError,
    Outcome,
    Pipeline,
    ReadTimeout,
    ResponseReset,
    ServiceUnavailable,
    TooManyRequests,
)
from mitigations.criticality import CriticalityMix
from mitigations.defer import Defer
from mitigations.defer_config import deferrable
from mitigations.retry import Retry, RetryConfig
from mitigations.throttle import Throttle, ThrottleConfig
from tests.policy_kit import HeldCalls, SteppedClock

STEP_S = 0.05
SLO_MS = 300.0
EXAMPLES = 60
tried: Counter[str] = Counter()  # pipelines and scripts tried, for the report


# -- the far end ---------------------------------------------------------------------------------------


ACTIONS = ("ok", "500", "503", "429", "reset", "reset-mid", "refused", "timeout", "hang")


def _failure(action: str) -> tuple[int | None, HammerError | None]:
    return {
        "ok": (200, None),
        "500": (500, HttpServerError("500")),
        "503": (503, ServiceUnavailable()),
        "429": (429, TooManyRequests()),
        "reset": (None, ConnectionReset()),
        "reset-mid": (200, ResponseReset()),
        "refused": (None, ConnectRefused()),
        "timeout": (None, ReadTimeout()),
    }[action]


class ScriptedTransport:
    """Answers attempt n with `script[n % len(script)]`: an action and the fake seconds it takes. A hang
    never answers; like the real transports, it honours the call's deadline (`DeadlineExceeded`)."""

    def __init__(self, clock: SteppedClock, script: list[tuple[str, float]]) -> None:
        self.clock, self.script, self.sent = clock, script, 0

    def send(self, call: Call) -> Outcome:
        action, takes = self.script[self.sent % len(self.script)]
        self.sent += 1
        expired = take_time(self.clock, call, None if action == "hang" else takes)
        if expired is not None:
            return expired
        status, error = _failure(action)
        return Outcome(call=call, finished_at=self.clock.now(), status=status, error=error)


def take_time(clock: SteppedClock, call: Call, takes: float | None) -> Outcome | None:
    """Wait the fake `takes` seconds of an answer (None: a hang, until the drain kills it), or only until
    the call's deadline, as the real transports do: then the `DeadlineExceeded` outcome, else None."""
    remaining = call.remaining(clock.now())
    if remaining is not None and (takes is None or remaining < takes):
        clock.wait(gevent.event.Event(), remaining)
        return Outcome(call=call, finished_at=clock.now(), error=DeadlineExceeded())
    if takes is None:
        gevent.event.Event().wait()
    clock.wait(gevent.event.Event(), takes)
    return None


class Requests:
    """Stands in for Locust's events: the reporter fires `request` here."""

    def __init__(self) -> None:
        self.fired: list[dict[str, object]] = []
        self.request = SimpleNamespace(fire=lambda **kwargs: self.fired.append(kwargs))


# -- the reference model -------------------------------------------------------------------------------


@dataclass
class Phase:
    """What one logical call's current run through the pipeline announced (a replay starts a new one)."""

    wire: Outcome | None = None  # the last attempt that reached the server, or the first answer
    sheds: list[Outcome] = field(default_factory=list)  # every shed announced, in order
    limiter_shed: str | None = None  # a limiter's (or breaker's) shed announced, which `Defer` claims


@dataclass
class Model:
    """Each call's fate from its own events; `columns()` is what the ledger must say."""

    slo_ms: float
    launched_at: dict[str, float] = field(default_factory=dict)
    greenlets: dict[str, gevent.Greenlet] = field(default_factory=dict)
    phase: dict[str, Phase] = field(default_factory=dict)
    deferred: set[str] = field(default_factory=set)
    final: dict[str, tuple[str, str, bool]] = field(default_factory=dict)  # path -> (column, kind, slo)
    closed: bool = False
    problems: list[str] = field(default_factory=list)  # broken rules seen in a listener

    def on_wire(self, outcome: Outcome) -> None:
        """An answer (ok, or a 4xx the server is not blamed for) ends the call: a hedge's other copy
        that ends in the same instant, after it, is a loser and changes nothing (the first answer wins)."""
        phase = self.phase[outcome.call.path]
        if phase.wire is None or not _answered(phase.wire):
            phase.wire = outcome

    def on_shed(self, outcome: Outcome) -> None:
        path = outcome.call.path
        if isinstance(outcome.error, Deferred):
            assert self.phase[path].wire is None, "a call that reached the server was deferred"
            if (shed := self.phase[path].limiter_shed) is not None:  # raised here, it would end the call
                self.problems.append(f"{path} was announced as {shed} and then as deferred")
            self.deferred.add(path)
            self.phase[path] = Phase()  # its replay starts afresh
            return
        phase = self.phase[path]
        phase.sheds.append(outcome)
        if deferrable(outcome):
            phase.limiter_shed = outcome.kind

    def on_replayed(self, outcome: Outcome) -> None:
        path = outcome.call.path
        self.final[path] = self._end(path, self.phase[path], outcome)
        assert outcome.kind == self.final[path][1], "the replay's final outcome is not its own last event"

    def on_expired(self, outcome: Outcome) -> None:
        self.final[outcome.call.path] = ("shed", "defer-expired", False)

    def _end(self, path: str, phase: Phase, actual: Outcome) -> tuple[str, str, bool]:
        """The rule: the last attempt that reached the server decides; with none, the shed that ended
        last (of a hedge's two copies, the one that ended last; `actual` picks between copies shed in
        the same instant, and a shed `Defer` held back is announced only when the call ends)."""
        if phase.wire is not None:
            wire = phase.wire
            if wire.ok:
                good = 200 <= (wire.status or 0) < 300
                timely = (wire.finished_at - self.launched_at[path]) * 1000.0 <= self.slo_ms
                return ("ok", "ok", good and timely)
            return ("server_errors", wire.kind, False)
        assert phase.sheds, f"{path} ended with no event at all"
        last = max(shed.finished_at for shed in phase.sheds)
        latest = [shed.kind for shed in phase.sheds if shed.finished_at == last]
        return ("shed", actual.kind if actual.kind in latest else latest[-1], False)

    def settle(self) -> None:
        """Calls whose greenlet has ended since the last look."""
        assert not self.problems, self.problems
        for path, greenlet in self.greenlets.items():
            if path in self.final or path in self.deferred or not greenlet.ready():
                continue
            if not isinstance(greenlet.value, Outcome):
                self.final[path] = ("unfinished", "unfinished", False)
                continue
            ended = self._end(path, self.phase[path], greenlet.value)
            assert greenlet.value.kind == ended[1], (path, greenlet.value.kind, ended, self.phase[path])
            self.final[path] = ended

    def columns(self) -> dict[str, object]:
        self.settle()
        counts = Counter(column for column, _, _ in self.final.values())
        waiting = [path for path in self.deferred if path not in self.final]
        kept = len(waiting) if self.closed else 0
        return {
            "launched": len(self.launched_at),
            "ok": counts["ok"],
            "slo_ok": sum(slo for _, _, slo in self.final.values()),
            "server_errors": counts["server_errors"],
            "shed": counts["shed"],
            "unfinished": counts["unfinished"] + kept,
            "pending": 0 if self.closed else len(waiting),
            "kept": kept,
            "errors_by_kind": dict(Counter(k for c, k, _ in self.final.values() if c == "server_errors")),
            "shed_by_cause": dict(
                Counter(k.removeprefix("shed:") for c, k, _ in self.final.values() if c == "shed")
            ),
        }


def _answered(outcome: Outcome) -> bool:
    return not outcome.shed and not outcome.is_server_failure


def ledger_columns(ledger: CallLedger) -> dict[str, object]:
    return {
        "launched": ledger.launched,
        "ok": ledger.ok,
        "slo_ok": ledger.slo_ok,
        "server_errors": ledger.server_errors,
        "shed": ledger.shed,
        "unfinished": ledger.unfinished,
        "pending": ledger.pending,
        "kept": ledger.kept,
        "errors_by_kind": dict(ledger.errors_by_kind),
        "shed_by_cause": dict(ledger.shed_by_cause),
    }


def check_snapshot(runtime: ClientRuntime, model: Model) -> None:
    """The identity, and every column against the reference model."""
    ledger = runtime.ledger
    in_flight = runtime.concurrent
    assert ledger.launched == (
        ledger.ok + ledger.server_errors + ledger.shed + ledger.unfinished + ledger.pending + in_flight
    ), ledger_columns(ledger)
    assert in_flight == sum(not g.ready() for g in model.greenlets.values())
    assert ledger_columns(ledger) == model.columns()
    assert LatencySummary.of(ledger.histogram).count == ledger.ok + ledger.server_errors  # answered calls


# -- one drawn run -------------------------------------------------------------------------------------


def options(draw: st.DrawFn) -> dict[str, str]:
    """Small limits, so that queues fill, breakers open and deadlines bite within a few fake seconds."""
    pick = lambda *values: draw(st.sampled_from(values))  # noqa: E731
    return dict(
        max_concurrent=pick("1", "2", "4"), throttle_mode=pick("cancel", "queue"), queue_size=pick("1", "3"),
        queue_timeout_ms=pick("50", "400"), breaker_mode=pick("recent-error", "rate"),
        recent_error_delay_ms=pick("100", "1000"), breaker_window=pick("4", "1s"), min_calls=pick("1", "3"),
        open_ms=pick("200", "1000"), half_open_calls=pick("1", "2"), failure_rate_threshold=pick("50"),
        max_sockets=pick("1", "2"), read_timeout_ms=pick("100", "700"),
        request_timeout_ms=pick("300", "2000"),
        attempt_timeout_ms=pick("100", "600"), min_wire_share=pick("0", "50"),
        adaptive_initial_limit=pick("1", "3"), adaptive_min_limit="1", adaptive_max_limit=pick("4"),
        adaptive_mode=pick("cancel", "queue"), adaptive_queue_timeout_ms=pick("50", "300"),
        sre_k=pick("1.1", "2"), sre_window_s=pick("1", "10"), retry_attempts=pick("2", "3", "4"),
        retry_base_ms=pick("0", "30", "200"), retry_cap_ms=pick("200", "1000"),
        retry_budget=pick("0.01", "10", "100"),
        retry_methods=pick("GET", "*"), slo_ms=str(SLO_MS),
        defer_max_age_s=pick("0.3", "2", "60"), defer_max_queue=pick("1", "4", "100"),
        defer_priority=pick("fresh", "deferred"),
    )  # fmt: skip


def pipeline_names(draw: st.DrawFn) -> tuple[str, ...]:
    chosen = {name for name in ORDER if draw(st.booleans())}  # each policy in or out: varied pipelines
    if "defer" in chosen and not chosen & set(DEFER_SOURCES):
        chosen.add(draw(st.sampled_from(DEFER_SOURCES)))  # defer needs something whose sheds it keeps
    return tuple(name for name in ORDER if name in chosen)


def runtime_for(
    names: tuple[str, ...],
    parsed: SimpleNamespace,
    clock: SteppedClock,
    transport: ScriptedTransport,
    mix: CriticalityMix | None = None,
) -> ClientRuntime:
    """The runtime a Locust user class with these mitigations gets, over the scripted transport."""
    built = build_pipeline(names, parsed, "http://127.0.0.1:9", clock)
    for policy in built.policies.values():
        for holder in (policy, getattr(policy, "algorithm", None)):
            if isinstance(getattr(holder, "rng", None), random.Random):
                holder.rng = random.Random(7)  # type: ignore[union-attr]  # replayable by Hypothesis
        if isinstance(policy, Defer):  # no drainer greenlet on real time: the test drains at each step
            policy.config = dataclasses.replace(policy.config, drain_every=None)
    pipeline = Pipeline(
        list(built.policies.values()), transport, clock=clock,
        total_timeout=built.pipeline.total_timeout, min_wire_share=built.pipeline.min_wire_share,
    )  # fmt: skip
    return ClientRuntime("PropertyClient", BuiltPipeline(pipeline, built.policies), Requests(), SLO_MS, mix)


def watch(runtime: ClientRuntime, model: Model) -> None:
    events = runtime.pipeline.events
    events.on("wire", model.on_wire)
    events.on("shed", model.on_shed)
    events.on("replayed", model.on_replayed)
    events.on("expired", model.on_expired)


def steps(seconds: float) -> range:
    return range(max(0, round(seconds / STEP_S)))


@st.composite
def runs(draw: st.DrawFn):
    names = pipeline_names(draw)
    answer = st.tuples(st.sampled_from(ACTIONS), st.sampled_from((0.0, 0.02, 0.15, 0.6)))
    script = draw(st.lists(answer, min_size=1, max_size=8))
    launch = st.tuples(st.sampled_from((0, 1, 2, 6)), st.sampled_from(("GET", "POST")))  # steps first
    launches = draw(st.lists(launch, min_size=1, max_size=24))
    run_steps = draw(st.integers(0, 40))  # how long the test runs after its first launch, in steps
    drain_steps = draw(st.sampled_from((0, 4, 16)))
    return names, script, launches, run_steps, drain_steps, options(draw)


@pytest.fixture(scope="module")
def defer_root(tmp_path_factory: pytest.TempPathFactory):
    """One folder per example under it, kept until the module ends: a store opened by a call the drain
    killed may still be finishing in its thread."""
    return tmp_path_factory.mktemp("defer")


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs())
def test_every_launched_call_is_counted_once_in_the_column_its_own_events_say(defer_root, run):
    names, script, launches, run_steps, drain_steps, values = run
    directory = tempfile.mkdtemp(dir=defer_root)
    clock = SteppedClock()
    parsed = SimpleNamespace(**values, defer_dir=directory)
    runtime = runtime_for(names, parsed, clock, ScriptedTransport(clock, script))
    tried["pipelines"] += 1
    tried["+".join(names) or "(none)"] += 1
    model = Model(SLO_MS)
    watch(runtime, model)
    defer = runtime.defer
    step = 0
    for gap, method in launches:  # launch on schedule until the stop time
        if step > run_steps:
            break
        for _ in range(gap):
            tick(runtime, model, clock, defer)
            step += 1
        path = f"/c{len(model.launched_at)}"
        model.launched_at[path] = clock.now()
        model.phase[path] = Phase()
        model.greenlets[path] = runtime.launch(Call(method, path, launched_at=clock.now()))
    runtime.close()  # the test stops: no more launches; the drain lets what is in flight finish
    for _ in range(drain_steps):
        tick(runtime, model, clock, defer)
    runtime.drain(0)  # what is still running now is ended: unfinished
    runtime.drain_deferred(0)  # what is still queued stays on disk: unfinished, kept
    model.closed = True
    check_snapshot(runtime, model)
    ledger = runtime.ledger
    assert ledger.launched == ledger.ok + ledger.server_errors + ledger.shed + ledger.unfinished
    assert ledger.pending == 0 and runtime.concurrent == 0
    assert len(model.final) + ledger.kept == ledger.launched  # one end per call
    if defer is None:
        assert ledger.kept == 0 and ledger.lost == ledger.launched - ledger.ok


def tick(runtime: ClientRuntime, model: Model, clock: SteppedClock, defer: Defer | None) -> None:
    if defer is not None and not defer.closed:
        defer.drain_once()
    clock.advance(STEP_S)
    gevent.idle()
    settle_disk(defer)
    check_snapshot(runtime, model)


def settle_disk(defer: Defer | None) -> None:
    """Let `Defer`'s store open and its writes land (real threads) before the fake clock moves on, so a
    run replays the same way every time. Nothing here waits on the fake clock."""
    if defer is None:
        return
    if defer._started is not None:
        defer._started.wait(5)
    for _ in range(5000):
        if not defer._writing:
            break
        gevent.sleep(0.001)
    gevent.idle()


def test_the_property_tried_many_pipelines():
    """Runs after the property (file order): it must have tried its examples, over varied pipelines."""
    if not tried:
        pytest.skip("the property did not run in this session")
    assert tried["pipelines"] >= EXAMPLES // 2
    print(f"\nledger property: {tried['pipelines']} pipeline scripts, {len(tried) - 1} distinct pipelines")


# -- the refused-retry rule, at the pipeline -----------------------------------------------------------


def ledger_of(pipeline: Pipeline, calls: int, clock: SteppedClock) -> CallLedger:
    ledger = CallLedger(1000)
    for _ in range(calls):
        ledger.launch()
        ledger.finish(pipeline.execute(Call("GET", "/doWork", launched_at=clock.now())))
    return ledger


def test_a_retry_the_breaker_refuses_leaves_the_call_a_server_error_not_a_shed():
    clock = SteppedClock()
    breaker = CircuitBreaker(CircuitBreakerConfig(mode="recent-error", recent_error_delay=2.0))
    retry = Retry(RetryConfig(base=0.0, cap=0.0, budget=None))
    pipeline = Pipeline([retry, breaker], ScriptedTransport(clock, [("503", 0.0)]), clock=clock)
    seen: list[str] = []
    pipeline.events.on("wire", lambda o: seen.append(o.kind))
    pipeline.events.on("shed", lambda o: seen.append(o.kind))
    ledger = ledger_of(pipeline, 1, clock)
    assert seen == ["503", "shed:circuit-open"]  # one wire attempt; the retry refused, with its own row
    assert (ledger.server_errors, ledger.shed, ledger.errors_by_kind) == (1, 0, {"503": 1})


def test_a_retry_the_throttle_refuses_leaves_the_call_a_server_error_not_a_shed():
    clock = SteppedClock()
    held = HeldCalls(clock)
    first = [True]

    class Far:
        def send(self, call: Call) -> Outcome:
            if call.path == "/other":
                return held(call)
            if first[0]:  # the first attempt fails, and meanwhile another call takes the only slot
                first[0] = False
                gevent.spawn(pipeline.execute, Call("GET", "/other", launched_at=clock.now()))
                return Outcome(call=call, finished_at=clock.now(), status=503, error=ServiceUnavailable())
            raise AssertionError("the retry should not have reached the wire")

    retry = Retry(RetryConfig(base=0.1, cap=0.1, budget=None))
    pipeline = Pipeline([retry, Throttle(ThrottleConfig(max_concurrent=1))], Far(), clock=clock)
    ledger = ledger_of(pipeline, 1, clock)
    assert (ledger.server_errors, ledger.shed, ledger.errors_by_kind) == (1, 0, {"503": 1})
    held.release()


def test_a_deferring_client_announces_the_refused_retry_of_a_call_it_does_not_defer(tmp_path):
    from mitigations.defer_config import DeferConfig

    clock = SteppedClock()
    breaker = CircuitBreaker(CircuitBreakerConfig(mode="recent-error", recent_error_delay=2.0))
    defer = Defer(DeferConfig(directory=tmp_path, drain_every=None), None)
    retry = Retry(RetryConfig(base=0.0, cap=0.0, budget=None))
    pipeline = Pipeline([defer, retry, breaker], ScriptedTransport(clock, [("503", 0.0)]), clock=clock)
    shed: list[str] = []
    pipeline.events.on("shed", lambda o: shed.append(o.kind))
    ledger = ledger_of(pipeline, 1, clock)
    defer.close()
    assert (ledger.server_errors, ledger.pending, defer.deferred) == (1, 0, 0)  # not kept: it was served
    assert shed == ["shed:circuit-open"]  # the refused retry still has its row
