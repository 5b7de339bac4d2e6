"""Retry x hedge x breaker x deadline x defer, with a criticality mix or none: each promise at once.

`test_hedge_property` holds `Hedge` alone and `test_ledger_seams` draws hedged pipelines where a retry
is only sometimes in; here every pipeline has a retry (budgeted or naive) *and* a hedge (budgeted or
naive) on a fixed delay (or the adaptive one, which races nothing, in the call's own greenlet, until 20
latencies are in), usually a breaker and a total deadline, sometimes a per-attempt timeout, a limiter, a
socket pool and `Defer`, and the class runs with `--criticality-mix` or without one. The far end is
scripted (ok, 5xx, 503, 429 with or without Retry-After, 404, resets, connect refused or timed out, a
read timeout, a hang, a local client error), each answer fast or slow, on a fake clock whose sleeps park
(a retry's backoff waits for the clock, as on real time, instead of moving everyone's time). At every
step and at the end:

- the ledger identity in the totals and in each criticality, every column against the reference model
  of `test_ledger_identity` (one call, one column, from its own events), and one end per launched call;
- per logical call at the far end: at most one hedge, only of the first attempt and of an idempotent
  method; each attempt number sent at most once, never above `max_attempts`; a method that may not be
  resent is resent only after a failure that happened before sending; never back before Retry-After;
  (with `Defer`, per run: a replay runs the pipeline again, and only the run that reached the server counts)
- the counters: `retries` is the `retry` events and each call's are under `max_attempts`, `attempts` is
  calls plus retries, `hedged` is the `hedge` events, `hedge_won` the calls that returned the hedge's
  answer; both budgets hold (tokens earned per call); the histogram holds every answered call;
- the limiters and the pool never let more onto the wire than their limit, and give every permit back;
- the breaker moves only along its edges, lets nothing through while open, never holds more half-open
  probes than it permits, and a probe that was cancelled (a hedge's loser, a drained call) gives its
  slot back.

`HAMMERLAB_SEAM_EXAMPLES=3000` runs a real search; the default keeps the fast suite fast.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from types import SimpleNamespace

import gevent
import gevent.event
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from locust_plugin.ledger import LatencySummary
from locust_plugin.pipelines import DEFER_SOURCES, ORDER
from locust_plugin.runtime import ClientRuntime
from mitigations.admission import GatedPolicy
from mitigations.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from mitigations.core import (
    Call,
    ClientError,
    ConnectionReset,
    ConnectRefused,
    ConnectTimeout,
    HammerError,
    HttpClientError,
    HttpServerError,
    Outcome,
    ReadTimeout,
    ResponseReset,
    ServiceUnavailable,
    TooManyRequests,
)
from mitigations.criticality import CriticalityMix, criticality_of
from mitigations.hedge import Hedge
from mitigations.retry import BEFORE_SEND_KINDS, IDEMPOTENT_METHODS, RETRY_AFTER_HEADER, Retry
from tests.policy_kit import SteppedClock
from tests.test_ledger_identity import (
    SLO_MS,
    Model,
    Phase,
    ledger_columns,
    options,
    runtime_for,
    settle_disk,
    take_time,
    watch,
)
from tests.test_ledger_seams import check_split

EXAMPLES = int(os.environ.get("HAMMERLAB_SEAM_EXAMPLES", "120"))
STEP_S = 0.05
tried: Counter[str] = Counter()

ANSWERS: dict[str, tuple[int | None, type[HammerError] | None]] = {
    "ok": (200, None),
    "500": (500, HttpServerError),
    "503": (503, ServiceUnavailable),
    "429": (429, TooManyRequests),
    "429-wait": (429, TooManyRequests),  # with Retry-After: 1
    "404": (404, HttpClientError),
    "reset": (None, ConnectionReset),
    "reset-mid": (200, ResponseReset),
    "refused": (None, ConnectRefused),
    "connect-timeout": (None, ConnectTimeout),
    "timeout": (None, ReadTimeout),
    "client-error": (None, ClientError),
}
ACTIONS = (*ANSWERS, "hang")
RETRIED = (
    "ok",
    "503",
    "503",
    "reset",
    "refused",
    "429",
    "429-wait",
    "reset-mid",
    "connect-timeout",
    "timeout",
    "hang",
)
EDGES = {
    "rate": {(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN), (HALF_OPEN, CLOSED)},
    "recent-error": {(CLOSED, OPEN), (OPEN, CLOSED)},
}


class ParkingClock(SteppedClock):
    """`sleep` parks the sleeper until the test moves time past it, as real time would."""

    def sleep(self, seconds: float) -> None:
        self.wait(gevent.event.Event(), seconds)


@dataclass
class Sent:
    path: str
    method: str
    attempt: int
    hedge: bool
    arrived: float
    kind: str | None = None  # how it ended; None: cancelled (a hedge's loser, a drained call)
    ended: float | None = None
    retry_after: float | None = None


class FarEnd:
    """Answers attempt n with `script[n % len(script)]` (an action and its fake seconds), recording every
    copy that reached it and how many are inside now. A hang never answers; every answer honours the
    attempt's deadline (`DeadlineExceeded`), like the real transports."""

    def __init__(self, clock: SteppedClock, script: list[tuple[str, float]]) -> None:
        self.clock, self.script = clock, script
        self.sent: list[Sent] = []
        self.inside = 0
        self.open_breaker: CircuitBreaker | None = None  # an open breaker lets nothing through to here
        self.problems: list[str] = []

    def send(self, call: Call) -> Outcome:
        action, takes = self.script[len(self.sent) % len(self.script)]
        sent = Sent(call.path, call.method, call.attempt, call.hedge, self.clock.now())
        self.sent.append(sent)
        if self.open_breaker is not None and self.open_breaker._state == OPEN:
            self.problems.append(f"{sent} passed an open breaker")  # raised here, it would end the call
        self.inside += 1
        try:
            outcome = self._answer(call, action, takes)
        finally:
            self.inside -= 1
        sent.kind, sent.ended = outcome.kind, outcome.finished_at
        if outcome.header(RETRY_AFTER_HEADER) is not None:
            sent.retry_after = float(outcome.header(RETRY_AFTER_HEADER) or 0)
        return outcome

    def _answer(self, call: Call, action: str, takes: float) -> Outcome:
        if action == "client-error":  # the client's own machine: never reached the server
            return Outcome(call=call, finished_at=self.clock.now(), error=ClientError())
        expired = take_time(self.clock, call, None if action == "hang" else takes)
        if expired is not None:
            return expired
        status, error = ANSWERS[action]
        headers = {RETRY_AFTER_HEADER: "1"} if action == "429-wait" else {}
        now = self.clock.now()
        return Outcome(call=call, finished_at=now, status=status, error=error and error(), headers=headers)


def pipeline_names(draw: st.DrawFn) -> tuple[str, ...]:
    """A retry and a hedge always; a breaker and a total deadline usually; the rest sometimes."""
    chosen = {draw(st.sampled_from(("retry", "retry", "naive-retry")))}
    chosen.add(draw(st.sampled_from(("hedge", "hedge", "naive-hedge"))))
    for name, odds in (("breaker", 3), ("timeout", 3), ("attempt-timeout", 1), ("pooled", 1)):
        if draw(st.integers(0, odds)) > 0:
            chosen.add(name)
    chosen.add(draw(st.sampled_from(("none", "throttle", "adaptive", "sre"))))
    if chosen & set(DEFER_SOURCES) and draw(st.integers(0, 3)) == 0:
        chosen.add("defer")
    return tuple(name for name in ORDER if name in chosen)


@st.composite
def runs(draw: st.DrawFn):
    names = pipeline_names(draw)
    # Half the scripts fail mostly with what a retry resends, slowly enough to be hedged first.
    actions = draw(st.sampled_from((ACTIONS, RETRIED)))
    answer = st.tuples(st.sampled_from(actions), st.sampled_from((0.0, 0.02, 0.08, 0.15, 0.6)))
    script = draw(st.lists(answer, min_size=1, max_size=8))
    launch = st.tuples(st.sampled_from((0, 0, 1, 2, 6)), st.sampled_from(("GET", "GET", "PUT", "POST")))
    launches = draw(st.lists(launch, min_size=3, max_size=24))
    run_steps = draw(st.integers(4, 40))
    drain_steps = draw(st.sampled_from((0, 4, 16, 40)))
    values = options(draw)
    values.update(
        hedge_delay_ms=draw(st.sampled_from(("0", "10", "40", "100", "300"))),  # 0: the p95 of 20 calls
        hedge_budget=draw(st.sampled_from(("0", "5", "50", "100", "100"))),  # 0: no budget
        hedge_pause_ms=draw(st.sampled_from(("0", "0", "0", "2000"))),
        hedge_percentile="95",
        hedge_window="20",
        criticality_mix=draw(
            st.sampled_from(("off", "critical=0", "critical=0.3", "critical=0.5", "critical=1"))
        ),
        shed_sheddable_first=draw(st.sampled_from(("true", "false"))),
        retry_methods=draw(st.sampled_from(("GET", "*"))),
        retry_budget=draw(st.sampled_from(("0.01", "20", "100", "100"))),
    )
    return names, script, launches, run_steps, drain_steps, values


class Watch:
    """What the pipeline announced beyond the ledger's events: retries, hedges, breaker moves."""

    def __init__(self, runtime: ClientRuntime) -> None:
        self.retries: Counter[str] = Counter()
        self.hedges: Counter[str] = Counter()
        self.moves: list[tuple[str, str]] = []
        events = runtime.pipeline.events
        events.on("retry", lambda call, delay: self.retries.update([call.path]))
        events.on("hedge", lambda call: self.hedges.update([call.path]))
        events.on("state", lambda policy, old, new: self.moves.append((old, new)))


def limits(runtime: ClientRuntime) -> list[tuple[str, GatedPolicy, int | None]]:
    """Each gate below the hedge, with the most it may ever let through at once."""
    found = []
    for name, policy in runtime.policies.items():
        if isinstance(policy, GatedPolicy):
            cap = getattr(getattr(policy, "algorithm", None), "config", None)
            most = getattr(cap, "max_limit", None) if name == "adaptive" else policy.gate.limit
            found.append((name, policy, most))
    return found


def check_step(runtime: ClientRuntime, model: Model, labels: dict[str, str], far: FarEnd) -> None:
    assert not far.problems, far.problems
    if runtime.ledger.split is not None:
        check_split(runtime, model, labels)
    else:  # no mix: the totals alone
        ledger = runtime.ledger
        ended = ledger.ok + ledger.server_errors + ledger.shed + ledger.unfinished
        assert ledger.launched == ended + ledger.pending + runtime.concurrent, ledger_columns(ledger)
        assert ledger_columns(ledger) == model.columns()
    for name, policy, most in limits(runtime):
        assert policy.in_flight >= 0 and policy.queued >= 0, name
        if most is not None and name != "pooled":
            assert policy.in_flight <= most, (name, policy.in_flight, most)
    pool = runtime.policies.get("pooled")
    if isinstance(pool, GatedPolicy) and pool.gate.limit is not None:
        assert far.inside <= pool.gate.limit
    breaker = runtime.policies.get("breaker")
    if isinstance(breaker, CircuitBreaker):
        in_flight = breaker.half_open_in_flight
        assert 0 <= in_flight <= breaker.config.permitted_calls_in_half_open, in_flight


def tick(runtime, model, clock, labels, far) -> None:
    defer = runtime.defer
    if defer is not None and not defer.closed:
        defer.drain_once()
    clock.advance(STEP_S)
    gevent.idle()
    settle_disk(defer)
    check_step(runtime, model, labels, far)


@pytest.fixture(scope="module")
def defer_root(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("defer")


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs())
def test_retried_and_hedged_calls_keep_every_promise(defer_root, run):
    names, script, launches, run_steps, drain_steps, values = run
    clock = ParkingClock()
    parsed = SimpleNamespace(**values, defer_dir=tempfile.mkdtemp(dir=defer_root))
    share = values["criticality_mix"].partition("=")[2]
    mix = CriticalityMix(float(share)) if share else None
    far = FarEnd(clock, script)
    runtime = runtime_for(names, parsed, clock, far, mix)  # type: ignore[arg-type]
    breaker = runtime.policies.get("breaker")
    if isinstance(breaker, CircuitBreaker) and not {"throttle", "adaptive", "pooled"} & set(names):
        far.open_breaker = breaker  # nothing waits between the breaker and the wire
    tried["runs"] += 1
    tried["+".join(names)] += 1
    model = Model(SLO_MS)
    watch(runtime, model)
    seen = Watch(runtime)
    labels: dict[str, str] = {}
    methods: dict[str, str] = {}
    step = 0
    for gap, method in launches:
        if step > run_steps:
            break
        for _ in range(gap):
            tick(runtime, model, clock, labels, far)
            step += 1
        path = f"/c{len(model.launched_at)}"
        call = Call(method, path, launched_at=clock.now())
        model.launched_at[path] = clock.now()
        model.phase[path] = Phase()
        model.greenlets[path] = runtime.launch(call)
        labels[path] = criticality_of(call.headers)
        methods[path] = method
    runtime.close()
    for _ in range(drain_steps):
        tick(runtime, model, clock, labels, far)
    runtime.drain(0)
    if runtime.defer is not None:  # what `drain_deferred` ends after a second of real time, ended now
        runtime.defer.stop_replaying()
        runtime.defer.close()
    runtime.drain_deferred(0)
    model.closed = True
    check_step(runtime, model, labels, far)
    check_end(runtime, model, far, seen, methods)


def check_end(
    runtime: ClientRuntime, model: Model, far: FarEnd, seen: Watch, methods: dict[str, str]
) -> None:
    ledger = runtime.ledger
    assert runtime.concurrent == 0 and ledger.pending == 0 and far.inside == 0
    assert ledger.launched == ledger.ok + ledger.server_errors + ledger.shed + ledger.unfinished
    assert len(model.final) + ledger.kept == ledger.launched  # one end per call
    retry = next(p for p in runtime.policies.values() if isinstance(p, Retry))
    hedge = next(p for p in runtime.policies.values() if isinstance(p, Hedge))
    most = retry.config.max_attempts
    # -- per logical call, at the far end
    by_call: dict[str, list[Sent]] = defaultdict(list)
    for sent in far.sent:
        by_call[sent.path].append(sent)
    for path, sent in by_call.items():
        # A deferred call runs the pipeline again when it is replayed; only one run reached the server.
        copies = (
            sent if runtime.defer is None else [s for s in sent if not (s.kind or "").startswith("shed:")]
        )
        hedges = [s for s in copies if s.hedge]
        assert len(hedges) <= 1, (path, copies)
        tried["retried after a hedge"] += bool(hedges) and any(s.attempt > 1 for s in copies)
        assert all(s.attempt == 1 and s.method in IDEMPOTENT_METHODS for s in hedges), (path, copies)
        attempts = [s.attempt for s in copies if not s.hedge]
        assert len(attempts) == len(set(attempts)), (path, copies)
        assert max((s.attempt for s in copies), default=1) <= most, (path, copies)
        resendable = retry.config.methods is None or methods[path] in retry.config.methods
        if not resendable:  # sent again only after a failure before sending: the server never saw it
            for attempt in attempts:
                if attempt > 1:
                    before = {s.kind for s in copies if s.attempt == attempt - 1}
                    assert before & BEFORE_SEND_KINDS, (path, copies)
        if retry.config.respect_retry_after:  # never back before the server's Retry-After
            for later in (s for s in copies if s.attempt > 1 and not s.hedge):
                ended = [s for s in copies if s.attempt == later.attempt - 1 and s.ended is not None]
                if ended and all(s.retry_after is not None for s in ended):
                    earliest = min(s.ended + s.retry_after for s in ended)  # type: ignore[operator]
                    assert later.arrived >= earliest - 1e-9, (path, copies)
    # -- the counters
    assert all(n <= most - 1 for n in seen.retries.values()), seen.retries
    assert retry.retries == sum(seen.retries.values())
    assert retry.logical_calls <= retry.attempts <= retry.logical_calls + retry.retries
    if runtime.defer is None:  # a replay runs the pipeline again: a hedge of its own, if its first was shed
        assert all(n <= 1 for n in seen.hedges.values()), seen.hedges
    assert hedge.hedged == sum(seen.hedges.values())
    assert hedge.hedge_won <= hedge.hedged
    if runtime.defer is None:  # (a replay's final outcome is recast on the original call)
        ends = [g.value for g in model.greenlets.values() if isinstance(g.value, Outcome)]
        assert hedge.hedge_won == sum(o.call.hedge and not o.shed and not o.is_server_failure for o in ends)
    assert LatencySummary.of(ledger.histogram).count == ledger.ok + ledger.server_errors  # answered calls
    for policy, spent in ((retry, retry.retries), (hedge, hedge.hedged)):
        if policy.budget is not None:
            assert spent <= policy.budget.config.ratio * policy.budget.deposits + 1e-6, (policy.name, spent)
    # -- permits back
    for name, policy, _ in limits(runtime):
        assert (policy.in_flight, policy.queued) == (0, 0), name
    breaker = runtime.policies.get("breaker")
    if isinstance(breaker, CircuitBreaker):
        edges = EDGES[breaker.config.mode]
        assert all(move in edges for move in seen.moves), seen.moves
        assert all(a[1] == b[0] for a, b in zip(seen.moves, seen.moves[1:], strict=False)), seen.moves
        assert breaker.half_open_in_flight == 0, "a cancelled probe kept its half-open slot"
    tried["hedged"] += hedge.hedged
    tried["retried"] += retry.retries
    tried["transitions"] += len(seen.moves)


def test_the_property_retried_hedged_and_moved_the_breaker():
    """Runs after the property (file order): what it is about really happened."""
    if not tried:
        pytest.skip("the property did not run in this session")
    assert tried["runs"] >= EXAMPLES // 2
    assert tried["hedged"] > 0 and tried["retried"] > 0 and tried["transitions"] > 0
    counts = ", ".join(
        f"{tried[k]} {k}" for k in ("hedged", "retried", "retried after a hedge", "transitions")
    )
    print(f"\nretry x hedge property: {tried['runs']} runs, {counts}")
