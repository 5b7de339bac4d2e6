"""Hedging for any sequence of outcomes and clock steps (hypothesis, fake time, no sleeping).

`Hedge` alone over a scripted far end on a `SteppedClock`: hypothesis draws the config (a fixed or an
adaptive delay, a budget or none, a pause or none), each copy's answer and how long it takes, and the
launch schedule. At the end, with every call returned:

- at most one hedge per logical call, never for a method that is not idempotent, never of a retry;
- `hedged` is the hedges that were sent (reached the layer below), each paid for by one budget token;
- the budget never lets hedges past `ratio` of the calls (plus its time floor), whatever the timing;
- `hedge_won` counts exactly the calls that returned the hedge's answer;
- no copy is left running below.
"""

from __future__ import annotations

from collections import Counter

import gevent
import gevent.event
from hypothesis import given, settings
from hypothesis import strategies as st

from mitigations.core import Call, Outcome, PipelineEvents, ServiceUnavailable, ThrottleRejected
from mitigations.hedge import Hedge, HedgeConfig
from mitigations.retry import RetryBudgetConfig
from tests.policy_kit import SteppedClock

STEP_S = 0.025
ANSWERS = {
    "ok": (200, None),
    "503": (503, ServiceUnavailable),
    "shed": (None, ThrottleRejected),
    "404": (404, None),
}


class ScriptedFarEnd:
    """Copy n answers `script[n % len(script)]` after its delay; records what it saw and what is inside."""

    def __init__(self, clock: SteppedClock, script: list[tuple[str, float]]) -> None:
        self.clock, self.script = clock, script
        self.seen: list[Call] = []
        self.inside = 0

    def __call__(self, call: Call) -> Outcome:
        action, takes = self.script[len(self.seen) % len(self.script)]
        self.seen.append(call)
        self.inside += 1
        try:
            if takes:
                self.clock.wait(gevent.event.Event(), takes)
        finally:
            self.inside -= 1
        status, error = ANSWERS[action]
        return Outcome(call, self.clock.now(), status=status, error=error() if error else None)


@st.composite
def configs(draw) -> HedgeConfig:
    budget = draw(
        st.one_of(
            st.none(),
            st.builds(
                RetryBudgetConfig,
                ratio=st.sampled_from((0.05, 0.3, 1.0)),
                min_retries_per_second=st.sampled_from((0.0, 0.0, 2.0)),
                max_balance=st.sampled_from((1.0, 3.0)),
            ),
        )
    )
    return HedgeConfig(
        delay=draw(st.sampled_from((None, 0.025, 0.05, 0.1))),
        window=10,
        min_samples=draw(st.sampled_from((1, 3))),
        budget=budget,
        pause=draw(st.sampled_from((0.0, 0.1, 0.5))),
        jump_window=3,
    )


@settings(max_examples=100, deadline=None)
@given(
    config=configs(),
    script=st.lists(
        st.tuples(st.sampled_from(tuple(ANSWERS)), st.sampled_from((0.0, 0.025, 0.05, 0.1, 0.4))),
        min_size=1,
        max_size=8,
    ),
    launches=st.lists(
        st.tuples(st.sampled_from((0, 0, 1, 3)), st.sampled_from(("GET", "GET", "POST"))), max_size=25
    ),
)
def test_one_hedge_at_most_within_the_budget_and_counted_once(config, script, launches):
    clock = SteppedClock()
    policy = Hedge(config)
    policy.bind(clock, PipelineEvents())
    far = ScriptedFarEnd(clock, script)
    started = clock.now()
    calls: dict[str, gevent.Greenlet] = {}
    for gap, method in launches:
        for _ in range(gap):
            clock.advance(STEP_S)
        path = f"/c{len(calls)}"
        calls[path] = gevent.spawn(policy.execute, Call(method, path, launched_at=clock.now()), far)
        gevent.idle()
    for _ in range(40):  # every copy takes at most 0.4 s: all are done well within a second
        clock.advance(STEP_S)
    assert all(g.ready() for g in calls.values())
    outcomes = {path: g.get() for path, g in calls.items()}
    copies = Counter(c.path for c in far.seen)
    hedges = Counter(c.path for c in far.seen if c.hedge)
    assert all(n <= 2 for n in copies.values()) and all(n <= 1 for n in hedges.values())
    assert not any(c.hedge and c.method == "POST" for c in far.seen)
    assert policy.hedged == sum(hedges.values()), "a hedge counted that never reached the layer below"
    won = sum(o.call.hedge and not o.shed and not o.is_server_failure for o in outcomes.values())
    assert policy.hedge_won == won
    if policy.budget is not None:
        budget = policy.budget.config
        elapsed = clock.now() - started
        earned = budget.ratio * policy.calls + budget.min_retries_per_second * elapsed
        assert policy.hedged <= earned + 1e-6
        assert policy.budget.withdrawals == policy.hedged
    assert far.inside == 0
