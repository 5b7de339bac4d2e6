"""CircuitBreaker: stop calling a server that is failing, so it gets room to recover.

Two modes, chosen in `CircuitBreakerConfig.mode`:

- `recent-error`, the seed's CANCEL_IF_RECENT_ERROR: after any server failure, shed every call with
  `CircuitOpen` until `recent_error_delay` (2.0 s) has passed since the *last* failure. (The seed set a
  flag and a 2 s timer per error, so the first timer cleared it; "from the last error" is the intent.)
- `rate`, after resilience4j's CircuitBreaker:
  - `closed`: calls pass and land in a sliding window, either the last `window_size` calls
    (`window_type="count"`) or the calls that finished in the last `window_size` seconds (`"time"`).
    Once the window holds `minimum_calls`, the breaker opens when the failure rate reaches
    `failure_rate_threshold` %, or the slow-call rate (calls taking longer than `slow_call_duration`
    seconds through the breaker) reaches `slow_call_rate_threshold` %.
  - `open`: every call is shed with `CircuitOpen` for `open_duration` seconds. The move to `half-open`
    happens lazily, on the first call (or `state` read) after that.
  - `half-open`: at most `permitted_calls_in_half_open` probe calls pass; the rest are shed. When all
    probes have finished, the breaker closes if their failure and slow rates are under the thresholds,
    and opens again otherwise. A probe that never returns cannot hold it there: after
    `half_open_max_wait` seconds in half-open it opens again (resilience4j's
    `maxWaitDurationInHalfOpenState`; its default 0 waits forever, this one is 5 s, `None` waits forever).

What counts as a failure is `Outcome.is_server_failure`: connect errors, timeouts, resets, 5xx, 503 and
429. Any other 4xx is the client's fault and counts as a success. Calls shed by inner policies (a
throttle, a socket wait, the deadline's wire share) and calls that failed on the client's own machine
(`client-error`) never reached the server, so they are not recorded; a shed half-open probe gives its
slot back.
Outcomes of calls admitted before a transition are dropped: a slow success that started while closed
must not close a breaker that has since opened.

Every transition emits `events.emit("state", breaker, old, new)` and is counted (`transitions`) and kept
in `recent_transitions` for the UI. No lock is held across the call (pybreaker holds one, which under
gevent turns a shared breaker into a concurrency limit of one: FIELD-NOTES §3); the state is a few
fields updated between cooperative switches.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal, NamedTuple

from mitigations._checks import check_choice, check_int, check_percent, check_seconds
from mitigations.core import BasePolicy, Call, CircuitOpen, Gauges, Next, Outcome, Shed

BreakerMode = Literal["recent-error", "rate"]
BREAKER_MODES: tuple[BreakerMode, ...] = ("recent-error", "rate")
WindowType = Literal["count", "time"]
WINDOW_TYPES: tuple[WindowType, ...] = ("count", "time")

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half-open"


@dataclass(frozen=True)
class CircuitBreakerConfig:
    """Settings for both modes; each mode reads only its own. Times are seconds, rates are percent.

    Defaults follow resilience4j (50 % failures over the last 100 calls, at least 100 of them, 10
    half-open probes) except `open_duration`, 5 s (Polly's break) rather than 60 s, to suit a short lab
    run. `slow_call_duration=None` turns slow-call detection off. `half_open_max_wait` (seconds; None:
    forever) bounds how long probes may hold the breaker half-open before it opens again.
    """

    mode: BreakerMode = "rate"
    recent_error_delay: float = 2.0
    failure_rate_threshold: float = 50.0
    window_type: WindowType = "count"
    window_size: float = 100
    minimum_calls: int = 100
    slow_call_duration: float | None = None
    slow_call_rate_threshold: float = 100.0
    permitted_calls_in_half_open: int = 10
    open_duration: float = 5.0
    half_open_max_wait: float | None = 5.0

    def __post_init__(self) -> None:
        owner = "CircuitBreakerConfig"
        check_choice(owner, "mode", self.mode, BREAKER_MODES)
        check_seconds(owner, "recent_error_delay", self.recent_error_delay)
        check_percent(owner, "failure_rate_threshold", self.failure_rate_threshold)
        check_choice(owner, "window_type", self.window_type, WINDOW_TYPES)
        if self.window_type == "count":
            check_int(owner, "window_size", self.window_size, minimum=1)
        else:
            check_seconds(owner, "window_size", self.window_size)
        check_int(owner, "minimum_calls", self.minimum_calls, minimum=1)
        if self.window_type == "count" and self.minimum_calls > self.window_size:
            raise ValueError(
                f"{owner}.minimum_calls must be <= window_size ({self.window_size}) for a count window, "
                f"got {self.minimum_calls}"
            )
        check_seconds(owner, "slow_call_duration", self.slow_call_duration, allow_none=True)
        check_percent(owner, "slow_call_rate_threshold", self.slow_call_rate_threshold)
        check_int(owner, "permitted_calls_in_half_open", self.permitted_calls_in_half_open, minimum=1)
        check_seconds(owner, "open_duration", self.open_duration)
        check_seconds(owner, "half_open_max_wait", self.half_open_max_wait, allow_none=True)


class Transition(NamedTuple):
    at: float
    old: str
    new: str


class WindowStats(NamedTuple):
    calls: int
    failures: int
    slow: int

    def failure_rate(self) -> float:
        return 100.0 * self.failures / self.calls if self.calls else 0.0

    def slow_rate(self) -> float:
        return 100.0 * self.slow / self.calls if self.calls else 0.0


class _Window:
    """Recorded calls as (finished_at, failed, slow), with running totals.

    A count window keeps the last `size` calls. A time window keeps calls that finished in the last
    `size` seconds, i.e. in (now - size, now]. Memory is one small tuple per call in the window.
    """

    def __init__(self, kind: WindowType, size: float) -> None:
        self.kind, self.size = kind, size
        self._items: deque[tuple[float, bool, bool]] = deque()
        self._failures = 0
        self._slow = 0

    def record(self, now: float, failed: bool, slow: bool) -> int:
        """Add one call; returns how many are held now (`len`, without another call per call)."""
        items = self._items
        items.append((now, failed, slow))
        self._failures += failed
        self._slow += slow
        if self.kind == "count":
            if len(items) > self.size:
                self._drop()
        else:  # what `stats(now)` would drop (calls end in time order), so `len` is what is held
            horizon = now - self.size
            while items[0][0] <= horizon:
                self._drop()
        return len(items)

    def stats(self, now: float) -> WindowStats:
        if self.kind == "time":
            horizon = now - self.size
            while self._items and self._items[0][0] <= horizon:
                self._drop()
        return WindowStats(len(self._items), self._failures, self._slow)

    def __len__(self) -> int:
        """Calls held; a later `stats` may drop some as too old, never add any."""
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()
        self._failures = self._slow = 0

    def _drop(self) -> None:
        _, failed, slow = self._items.popleft()
        self._failures -= failed
        self._slow -= slow


class CircuitBreaker(BasePolicy):
    """See the module doc. Gauges: `state`, `failure_rate`/`slow_call_rate` (None below minimum_calls),
    `window` (WindowStats), `half_open_in_flight`. Counters: `rejected` (shed with CircuitOpen),
    `transitions` {(old, new): count}; `recent_transitions` holds the last 20 as (at, old, new).
    On the board (`gauges`): the state, the count of transitions and the last few, at wall-clock times."""

    name = "breaker"
    RECENT_TRANSITIONS = 20
    SHOWN_TRANSITIONS = 3

    def __init__(self, config: CircuitBreakerConfig) -> None:
        super().__init__()
        self.config = config
        self._state = CLOSED
        self._generation = 0  # bumped on every transition; a permit from an older one is stale
        self._opened_at = 0.0
        self._half_opened_at = 0.0
        self._open_until = 0.0  # recent-error mode: when the last error's delay ends
        self._window = _Window(config.window_type, config.window_size)
        self._probes = _Window("count", config.permitted_calls_in_half_open)
        self._probes_admitted = 0
        self.rejected = 0
        self.transitions: dict[tuple[str, str], int] = {}
        self.recent_transitions: deque[Transition] = deque(maxlen=self.RECENT_TRANSITIONS)

    # -- gauges ---------------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """`closed`, `open` or `half-open`, after any transition that time alone has brought about."""
        self._refresh(self.clock.now())
        return self._state

    @property
    def window(self) -> WindowStats:
        return self._window.stats(self.clock.now())

    @property
    def failure_rate(self) -> float | None:
        stats = self.window
        return stats.failure_rate() if stats.calls >= self.config.minimum_calls else None

    @property
    def slow_call_rate(self) -> float | None:
        stats = self.window
        return stats.slow_rate() if stats.calls >= self.config.minimum_calls else None

    @property
    def half_open_in_flight(self) -> int:
        if self._state != HALF_OPEN:
            return 0
        return self._probes_admitted - self._probes.stats(self.clock.now()).calls

    def gauges(self, wall_now: float) -> Gauges:
        offset = wall_now - self.clock.now()  # the breaker's clock is monotonic
        return {
            "breaker_state": self.state,
            "breaker_transitions": sum(self.transitions.values()),
            "recent_transitions": tuple(
                (round(t.at + offset, 3), t.old, t.new)
                for t in list(self.recent_transitions)[-self.SHOWN_TRANSITIONS :]
            ),
        }

    # -- the policy -------------------------------------------------------------------------------------

    def execute(self, call: Call, proceed: Next) -> Outcome:
        started = self.clock.now()
        # `_acquire`, inlined for the common case: time alone never moves a closed breaker.
        permit = self._generation if self._state == CLOSED else self._acquire(started)
        if permit is None:
            self.rejected += 1
            return self.shed(call, CircuitOpen())
        try:
            outcome = proceed(call)
        except BaseException:
            self._release(permit)
            raise
        if isinstance(outcome.error, Shed):  # `outcome.shed`
            self._release(permit)
        else:
            now = self.clock.now()
            limit = self.config.slow_call_duration  # `_is_slow`, inlined: this runs for every call
            slow = limit is not None and now - started > limit
            failed = outcome.error is not None and outcome.is_server_failure  # an answer: no property call
            self._record(permit, now, failed, slow)
        return outcome

    def _is_slow(self, duration: float) -> bool:
        limit = self.config.slow_call_duration
        return limit is not None and duration > limit

    def _acquire(self, now: float) -> int | None:
        """The current generation if the call may pass, else None."""
        self._refresh(now)
        if self._state == CLOSED:
            return self._generation
        if self._state == HALF_OPEN and self._probes_admitted < self.config.permitted_calls_in_half_open:
            self._probes_admitted += 1
            return self._generation
        return None

    def _release(self, permit: int) -> None:
        """The call ended without a verdict on the server (shed further in, or an exception)."""
        if permit == self._generation and self._state == HALF_OPEN:
            self._probes_admitted -= 1

    def _record(self, permit: int, now: float, failed: bool, slow: bool) -> None:
        if self.config.mode == "recent-error":
            if failed:
                self._open_until = max(self._open_until, now + self.config.recent_error_delay)
                if self._state == CLOSED:
                    self._transition(now, OPEN)
            return
        if permit != self._generation:
            return
        if self._state == CLOSED:
            window, minimum = self._window, self.config.minimum_calls
            held = window.record(now, failed, slow)
            # Fewer calls held than the minimum: it cannot open (skips building the window's stats on
            # most calls of a healthy run).
            if held >= minimum and self._should_open(window.stats(now), minimum):
                self._transition(now, OPEN)
        elif self._state == HALF_OPEN:
            self._probes.record(now, failed, slow)
            permitted = self.config.permitted_calls_in_half_open
            stats = self._probes.stats(now)
            if stats.calls >= permitted:
                self._transition(now, OPEN if self._should_open(stats, permitted) else CLOSED)

    def _should_open(self, stats: WindowStats, minimum: int) -> bool:
        if stats.calls < minimum:
            return False
        if stats.failure_rate() >= self.config.failure_rate_threshold:
            return True
        return (
            self.config.slow_call_duration is not None
            and stats.slow_rate() >= self.config.slow_call_rate_threshold
        )

    def _refresh(self, now: float) -> None:
        """Apply the transitions that only need time to pass."""
        if self._state == HALF_OPEN:
            wait = self.config.half_open_max_wait
            if wait is not None and now >= self._half_opened_at + wait:
                self._transition(now, OPEN)  # probes that never return: the server is not back
            return
        if self._state != OPEN:
            return
        if self.config.mode == "recent-error":
            if now >= self._open_until:
                self._transition(now, CLOSED)
        elif now >= self._opened_at + self.config.open_duration:
            self._transition(now, HALF_OPEN)

    def _transition(self, now: float, new: str) -> None:
        old, self._state = self._state, new
        self._generation += 1
        if new == OPEN:
            self._opened_at = now
        if new == HALF_OPEN:
            self._half_opened_at = now
            self._probes.clear()
            self._probes_admitted = 0
        if new == CLOSED:
            self._window.clear()
        self.transitions[(old, new)] = self.transitions.get((old, new), 0) + 1
        self.recent_transitions.append(Transition(now, old, new))
        self.events.emit("state", self, old, new)
