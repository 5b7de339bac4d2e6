"""Hedged requests: cut the tail with a second copy, without turning it into a storm.

"The Tail at Scale" (Dean and Barroso, CACM 2013): send a second copy of a request that has not been
answered after a delay near the expected p95, take whichever copy answers first and cancel the other.
BigTable reads hedged after 10 ms cut their p99.9 from 1,800 ms to 74 ms for 2 % more requests. Polly v8
ships the same strategy (`HedgingStrategyOptions`: a delay, at most N hedged attempts, the first
acceptable result wins). A hedge is an extra request, though: at overload, naive hedging is one more
retry storm. `Hedge` keeps it safe with four rules:

- **when**: after a fixed delay (`delay`), or an adaptive one: the `percentile` (p95 by default) of the
  last `window` latencies of first attempts, measured from the moment this layer sent them. A primary
  that lost to its hedge is recorded with the time it had taken when cancelled (a lower bound, which is
  all that a rank needs). Until `min_samples` latencies are in, no hedge: the tail is not known yet;
- **what**: at most one hedge per logical call; only the first attempt is hedged, never a retry (a
  retry is already a second copy), and only an idempotent method (`retry.IDEMPOTENT_METHODS`, the rule
  retries use: a hedge always risks the server doing the work twice). A hedge goes out only while the
  call may still be sent (`Call.sendable`); it carries the call's remaining deadline like any attempt
  (the transport's `X-Request-Deadline-Ms`);
- **how many**: a `retry.RetryBudget` token bucket: each logical call deposits `budget.ratio` (5 %),
  each hedge withdraws one, so hedges stay at most that share of recent calls, plus the bucket's
  `max_balance` after a quiet spell;
- **never at overload**: hedging stops for `pause` seconds after the last overload signal seen anywhere
  in the pipeline: a wire answer of kind 503, 429, `expired` (the server dropped work for its deadline)
  or `connect-timeout` (its accept queue is full); a call shed by a limiter, breaker, retry budget or
  deadline (`OVERLOAD_SHEDS`); the adaptive limit falling `limit_drop` (10 %) below its recent high; or
  a latency jump: the median of the last `jump_window` first-attempt latencies above `jump_factor` times
  the window's median.

The first answer wins: ok or a 4xx. A copy that failed on the server's side (or was shed) does not: the
other is awaited, and when both fail the one that ended last is returned (the caller waited for both),
unless only the other reached the server: a call that reached the server and failed there is a server
failure, never a shed (the rule retries follow), timed when the last copy ended.
The loser is cancelled by killing its greenlet: `GreenletExit` unwinds every layer below (permits go
back in their `finally`) and both transports close, rather than pool, a connection whose exchange was
cut (geventhttpclient's `release_socket`, urllib3's unclean exit), so no half-read response is ever
reused. The server sees the connection close: the target counts the request `abandoned` (the work
skipped) or its CPU as wasted.

`HedgeConfig(budget=None, pause=0)` is naive hedging: every slow call hedged, whatever the server says.
It exists so the lab can show the storm.

No lock is held across a call; the race is two greenlets and a gevent wait.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from dataclasses import dataclass, field

import gevent
import gevent.event

from mitigations._checks import check_int
from mitigations.core import BasePolicy, Call, Clock, Gauges, Next, Outcome, PipelineEvents
from mitigations.retry import IDEMPOTENT_METHODS, RetryBudget, RetryBudgetConfig

# Wire answers that say the server is overloaded (see the module doc).
OVERLOAD_KINDS = frozenset({"503", "429", "expired", "connect-timeout"})
# Shed causes that say this client is already holding load back.
OVERLOAD_SHEDS = frozenset(
    {"throttle", "adaptive", "sre-throttle", "circuit-open", "budget", "deadline", "deferred", "defer-full"}
)
KILL_WAIT_S = 1.0  # how long a cancel waits for the loser to unwind (its finally blocks never block)


def _number(owner: str, name: str, value: object, low: float, high: float, allowed: str) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not low <= value <= high:  # type: ignore[operator]
        raise ValueError(f"{owner}.{name} must be {allowed}, got {value!r}")


def default_budget() -> RetryBudgetConfig:
    return RetryBudgetConfig(ratio=0.05)


@dataclass(frozen=True)
class HedgeConfig:
    """`delay` in seconds, or None for the adaptive delay (`percentile` of the last `window` first-attempt
    latencies, once `min_samples` are in). `budget=None`: no budget. `pause` seconds without hedges after
    an overload signal; 0: never pause. `jump_factor`, `jump_window`, `limit_drop`: what counts as a
    latency jump and a falling limit (module doc)."""

    delay: float | None = None
    percentile: float = 95.0
    window: int = 1000
    min_samples: int = 20
    budget: RetryBudgetConfig | None = field(default_factory=default_budget)
    pause: float = 2.0
    jump_factor: float = 2.0
    jump_window: int = 16
    limit_drop: float = 0.1
    methods: frozenset[str] = IDEMPOTENT_METHODS

    def __post_init__(self) -> None:
        owner = "HedgeConfig"
        if self.delay is not None:
            _number(owner, "delay", self.delay, 1e-6, 3600.0, "seconds > 0 (at most 3600) or None (adaptive)")
        _number(owner, "percentile", self.percentile, 1.0, 99.99, "a percentile from 1 to 99.99")
        check_int(owner, "window", self.window, minimum=10)
        check_int(owner, "min_samples", self.min_samples, minimum=1)
        if self.min_samples > self.window:
            raise ValueError(f"{owner}.min_samples must be <= window ({self.window}), got {self.min_samples}")
        if self.budget is not None and not isinstance(self.budget, RetryBudgetConfig):
            raise ValueError(f"{owner}.budget must be a RetryBudgetConfig or None, got {self.budget!r}")
        _number(owner, "pause", self.pause, 0.0, 3600.0, "seconds from 0 (never pause) to 3600")
        _number(owner, "jump_factor", self.jump_factor, 1.0, 1000.0, "a factor from 1 to 1000")
        check_int(owner, "jump_window", self.jump_window, minimum=3)
        _number(owner, "limit_drop", self.limit_drop, 0.0, 1.0, "a share from 0 to 1")
        if isinstance(self.methods, str) or not all(isinstance(m, str) for m in self.methods):
            raise ValueError(f"{owner}.methods must be a set of HTTP method names, got {self.methods!r}")
        object.__setattr__(self, "methods", frozenset(m.upper() for m in self.methods))

    @classmethod
    def naive(cls, delay: float | None = None) -> HedgeConfig:
        """Hedge every slow call, no budget, no pause: the storm, for contrast."""
        return cls(delay=delay, budget=None, pause=0.0)


class LatencyWindow:
    """The last `size` latencies (seconds) and their percentiles. Sorting is redone only when a
    fiftieth of the window is new, so reading the delay on every call stays cheap."""

    def __init__(self, size: int, jump_window: int) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self._recent: deque[float] = deque(maxlen=jump_window)
        self._sorted: list[float] = []
        self._fresh = 0

    def __len__(self) -> int:
        return len(self._values)

    def add(self, seconds: float) -> None:
        self._values.append(seconds)
        self._recent.append(seconds)
        self._fresh += 1

    def percentile(self, p: float) -> float:
        """Nearest rank; call only when non-empty."""
        if self._fresh and (not self._sorted or self._fresh * 50 >= len(self._values)):
            self._sorted = sorted(self._values)
            self._fresh = 0
        values = self._sorted
        rank = max(1, math.ceil(p / 100.0 * len(values)))
        return values[rank - 1]

    def jumped(self, factor: float) -> bool:
        """The median of the most recent latencies is above `factor` times the window's median."""
        if len(self._recent) < (self._recent.maxlen or 0):
            return False
        recent = sorted(self._recent)
        return recent[len(recent) // 2] > factor * self.percentile(50.0)


class Hedge(BasePolicy):
    """Sends a second copy of a slow call and returns whichever answers first (see module doc).

    Counters: `calls` (first attempts seen), `hedged` (calls that sent a hedge), `hedge_won` (calls
    whose returned answer was the hedge's), `budget_denials`, `paused_skips` (a hedge was due while
    hedging was paused), `unsafe` (calls never hedged for their method), `overloads` (signals that
    (re)started a pause). Gauges on the board and in the CSV: `hedged`, `hedge_won`.
    Emits `hedge(call)` for each hedge sent (the copy, marked `hedge=True`).
    """

    name = "hedge"

    def __init__(self, config: HedgeConfig | None = None) -> None:
        super().__init__()
        self.config = config or HedgeConfig()
        self.budget = RetryBudget(self.config.budget) if self.config.budget is not None else None
        self.latencies = LatencyWindow(self.config.window, self.config.jump_window)
        self.calls = 0
        self.hedged = 0
        self.hedge_won = 0
        self.budget_denials = 0
        self.paused_skips = 0
        self.unsafe = 0
        self.overloads = 0
        self._paused_until = -math.inf
        self._limit_high: float | None = None

    def bind(self, clock: Clock, events: PipelineEvents) -> None:
        super().bind(clock, events)
        events.on("wire", self._on_wire)
        events.on("shed", self._on_shed)
        events.on("limit", self._on_limit)

    def gauges(self, wall_now: float) -> Gauges:
        return {"hedged": self.hedged, "hedge_won": self.hedge_won}

    # -- when to hedge ---------------------------------------------------------------------------

    @property
    def amplification(self) -> float:
        """Attempts per logical call this layer caused (1.0: no hedges)."""
        return (self.calls + self.hedged) / self.calls if self.calls else 1.0

    def paused(self) -> bool:
        return self.clock.now() < self._paused_until

    def delay(self) -> float | None:
        """Seconds before a hedge, or None while the adaptive delay has too few latencies."""
        if self.config.delay is not None:
            return self.config.delay
        if len(self.latencies) < self.config.min_samples:
            return None
        return self.latencies.percentile(self.config.percentile)

    def _overload(self) -> None:
        if self.config.pause > 0:
            self._paused_until = self.clock.now() + self.config.pause
            self.overloads += 1

    def _on_wire(self, outcome: Outcome) -> None:
        if outcome.kind in OVERLOAD_KINDS:
            self._overload()

    def _on_shed(self, outcome: Outcome) -> None:
        if getattr(outcome.error, "cause", None) in OVERLOAD_SHEDS:
            self._overload()

    def _on_limit(self, policy: object, value: float) -> None:
        high = self._limit_high
        if high is None or value > high:
            self._limit_high = value
        elif value <= high * (1 - self.config.limit_drop):
            self._limit_high = value  # the next pause needs a further fall
            self._overload()

    def _record(self, seconds: float) -> None:
        self.latencies.add(seconds)
        if len(self.latencies) >= self.config.min_samples and self.latencies.jumped(self.config.jump_factor):
            self._overload()

    def _may_hedge(self, call: Call) -> bool:
        """Asked when the delay has passed: not paused, time left to send, and a token."""
        now = self.clock.now()
        if now < self._paused_until:
            self.paused_skips += 1
            return False
        if call.sendable(now) == 0:
            return False
        if self.budget is not None and not self.budget.try_withdraw(now):
            self.budget_denials += 1
            return False
        return True

    # -- the call --------------------------------------------------------------------------------

    def execute(self, call: Call, proceed: Next) -> Outcome:
        if call.attempt > 1 or call.hedge:
            return proceed(call)  # a retry or a hedge: one copy per logical call is enough
        started = self.clock.now()
        self.calls += 1
        if self.budget is not None:
            self.budget.deposit(started)
        if call.method.upper() not in self.config.methods:
            self.unsafe += 1
            return proceed(call)
        delay = self.delay()
        if delay is None or started < self._paused_until:
            outcome = proceed(call)
            self._observe(outcome, started)
            return outcome
        return self._race(call, proceed, started, delay)

    def _observe(self, outcome: Outcome, started: float) -> None:
        if outcome.ok:
            self._record(outcome.finished_at - started)

    def _race(self, call: Call, proceed: Next, started: float, delay: float) -> Outcome:
        first_done = gevent.event.Event()

        def first() -> Outcome:
            try:
                return proceed(call)
            finally:
                first_done.set()  # at once, where a link() callback would wait for the hub

        primary = gevent.spawn(first)
        second: gevent.Greenlet | None = None
        try:
            if self.clock.wait(first_done, delay) or not self._may_hedge(call):
                outcome = primary.get()
                self._observe(outcome, started)
                return outcome
            self.hedged += 1
            copy = dataclasses.replace(call, hedge=True)
            self.events.emit("hedge", copy)
            second = gevent.spawn(proceed, copy)
            winner, outcome = _first_answer(primary, second)
            if winner is second and _is_answer(outcome):
                self.hedge_won += 1
            if primary.ready() and primary.successful():
                self._observe(primary.value, started)
            else:  # cancelled: it had taken at least this long
                self._record(self.clock.now() - started)
            return outcome
        finally:
            for greenlet in (primary, second):
                if greenlet is not None and not greenlet.dead:
                    greenlet.kill(block=True, timeout=KILL_WAIT_S)


def _is_answer(outcome: Outcome) -> bool:
    """The server answered it (ok or a 4xx): nothing the other copy could improve on."""
    return not outcome.shed and not outcome.is_server_failure


def _first_answer(*copies: gevent.Greenlet) -> tuple[gevent.Greenlet, Outcome]:
    """The first copy to bring an answer. If none does, the last to end of those that reached the
    server (a copy that reached it makes the call a server failure, never a shed: the rule retries
    follow), else the last shed; either way timed when the last copy ended, since the caller waited."""
    pending = list(copies)
    failed: tuple[gevent.Greenlet, Outcome] | None = None
    while True:
        done = gevent.wait(pending, count=1)
        greenlet = done[0]
        pending.remove(greenlet)
        outcome = greenlet.get()
        if _is_answer(outcome):
            return greenlet, outcome
        if failed is None or outcome.reached_wire or not failed[1].reached_wire:
            failed = greenlet, outcome
        if not pending:
            winner, last = failed
            if last is not outcome:
                last = dataclasses.replace(last, finished_at=max(last.finished_at, outcome.finished_at))
            return winner, last
