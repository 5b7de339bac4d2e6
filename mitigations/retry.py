"""Retries that cannot turn into a retry storm.

Retries are the most common sustaining effect of metastable failures: the server slows, clients retry,
the server sees more load and slows further. `Retry` keeps them safe with four rules:

- retry only what may succeed and cannot duplicate work. By kind: connect errors, resets, 503 and 429
  by default; never a 4xx other than 429. Read timeouts and other 5xx are off by default: retrying adds
  load exactly when the server is slowest. By method, after urllib3's `Retry.DEFAULT_ALLOWED_METHODS`:
  only idempotent methods (GET, HEAD, OPTIONS, PUT, DELETE, TRACE) are ever sent twice, because any
  failure after the request left may come after the server did the work; a reset after the status line
  arrived (`reset-mid-response`) almost certainly does. The one exception is a failure that provably
  happened before the request was sent (`connect-refused`, `connect-timeout`): retried for any method;
- wait with exponential backoff and full jitter, `U(0, min(cap, base * 2**n))` for the n-th retry
  (n from 0), and at least as long as the server's `Retry-After`;
- stop at `max_attempts`, and never sleep or send past the call's deadline;
- spend a `RetryBudget`: each logical call deposits `ratio` tokens and each retry withdraws one, so
  retries stay under `ratio` of calls (default 10 %, as in the SRE book and Finagle).

`RetryConfig.naive(n)` is the same policy without the rules: immediate retries of every server failure,
no budget, no Retry-After. It exists so the lab can show the storm.

Why not tenacity's `wait_random_exponential`: it draws from the module-global `random` (no injectable
RNG, so tests would have to seed global state) and takes a `RetryCallState` we would have to fake.
`FullJitter` below is the same formula in a few lines; the tests check its ceiling against tenacity's.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime

from mitigations._checks import check_int
from mitigations.core import BasePolicy, Call, Next, Outcome, RetryBudgetExhausted

# Every kind of server failure a retry could be asked for. "4xx" is deliberately absent.
RETRYABLE_KINDS = frozenset(
    {
        "connect-timeout",
        "connect-refused",
        "reset",
        "reset-mid-response",
        "503",
        "429",
        "read-timeout",
        "5xx",
        "transport",
        "deadline",
        "expired",
    }
)
SAFE_KINDS = frozenset({"connect-timeout", "connect-refused", "reset", "reset-mid-response", "503", "429"})
# The request never left the client: safe to send again whatever the method.
BEFORE_SEND_KINDS = frozenset({"connect-timeout", "connect-refused"})
# urllib3's Retry.DEFAULT_ALLOWED_METHODS: the methods RFC 9110 §9.2.2 calls idempotent.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})

RETRY_AFTER_HEADER = "Retry-After"


def _check_number(owner: str, name: str, value: object, ok: Callable[[float], bool], allowed: str) -> None:
    """A real number (not a bool) for which `ok` holds; else one line naming the value and what is allowed."""
    is_number = isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)
    if not is_number or not ok(value):  # type: ignore[arg-type]
        raise ValueError(f"{owner}.{name} must be {allowed}, got {value!r}")


def _finite_from(low: float) -> Callable[[float], bool]:
    return lambda v: low <= v < math.inf


# -- waiting ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FullJitter:
    """AWS "full jitter": sleep `U(0, min(cap, base * 2**n))` before retry number `n` (0 for the first)."""

    base: float
    cap: float

    def ceiling(self, n: int) -> float:
        if self.base <= 0 or self.cap <= 0:
            return 0.0
        if n >= math.log2(self.cap / self.base):  # also keeps 2**n from overflowing
            return self.cap
        return min(self.cap, self.base * 2**n)

    def __call__(self, n: int, rng: random.Random) -> float:
        high = self.ceiling(n)
        return rng.uniform(0.0, high) if high > 0 else 0.0


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a `Retry-After` value (RFC 9110 §10.2.3), or None if absent or unreadable.

    `value` is delay-seconds (`120`) or an HTTP-date in any of the three formats HTTP allows;
    `now` is the wall clock (epoch seconds) the date is measured against. A date in the past is 0."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit() and text.isascii():
        return float(int(text))
    if not text or text[0] in "+-" or text[0].isdigit():
        return None  # a number that is not 1*DIGIT, such as -1 or 1.5
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # asctime has no zone; HTTP dates are always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


# -- the budget ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryBudgetConfig:
    """Retries may be at most `ratio` of logical calls, plus `min_retries_per_second` whatever the
    traffic (Finagle's floor, so a quiet client can still retry; 0 by default so the 10 % holds exactly).
    `max_balance` caps the tokens a long healthy spell can bank for the next outage."""

    ratio: float = 0.1
    min_retries_per_second: float = 0.0
    max_balance: float = 10.0

    def __post_init__(self) -> None:
        owner = "RetryBudgetConfig"
        _check_number(owner, "ratio", self.ratio, lambda v: 0 <= v <= 1, "in [0, 1] (retries per call)")
        _check_number(owner, "min_retries_per_second", self.min_retries_per_second, _finite_from(0), ">= 0")
        _check_number(owner, "max_balance", self.max_balance, _finite_from(1), ">= 1 (a retry costs 1)")


class RetryBudget:
    """A token bucket: each logical call deposits `ratio`, time deposits `min_retries_per_second`,
    each retry withdraws 1. Starts empty: no retries are earned before any calls."""

    def __init__(self, config: RetryBudgetConfig | None = None) -> None:
        self.config = config or RetryBudgetConfig()
        self.balance = 0.0
        self._refilled_at: float | None = None
        self.deposits = 0
        self.withdrawals = 0
        self.denials = 0

    def _refill(self, now: float) -> None:
        last = self._refilled_at
        if last is None or now > last:  # the clock's latest reading: never moved back
            self._refilled_at = now
        rate = self.config.min_retries_per_second
        if rate > 0 and last is not None and now > last:  # no floor, or no time passed: nothing to add
            self._add((now - last) * rate)

    def _add(self, tokens: float) -> None:
        self.balance = min(self.config.max_balance, self.balance + tokens)

    def deposit(self, now: float) -> None:
        """One logical call was made."""
        self._refill(now)
        self.balance = min(self.config.max_balance, self.balance + self.config.ratio)  # `_add`, inlined
        self.deposits += 1

    def try_withdraw(self, now: float) -> bool:
        """Spend a token on one retry; False (and a denial counted) if there is none."""
        self._refill(now)
        # A little slack: ten deposits of 0.1 must buy a retry despite float rounding.
        if self.balance >= 1 - 1e-9:
            self.balance = max(0.0, self.balance - 1)
            self.withdrawals += 1
            return True
        self.denials += 1
        return False


# -- the policy ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryConfig:
    """`max_attempts` counts the first try (the SRE book: at most 3). Backoff is full jitter with
    `base` and `cap` in seconds. `retry_on` holds outcome kinds (see `RETRYABLE_KINDS`). `methods` are
    the HTTP methods that may be sent again after any of them (`None`: every method, which can duplicate
    work); `BEFORE_SEND_KINDS` are retried for every method. A `Retry-After` longer than
    `max_retry_after` seconds ends the retries rather than being cut short: coming back earlier is what
    the server asked us not to do. `budget=None` means no budget."""

    max_attempts: int = 3
    base: float = 0.05
    cap: float = 2.0
    retry_on: frozenset[str] = SAFE_KINDS
    methods: frozenset[str] | None = IDEMPOTENT_METHODS
    respect_retry_after: bool = True
    max_retry_after: float = 5.0
    budget: RetryBudgetConfig | None = dataclasses.field(default_factory=RetryBudgetConfig)

    def __post_init__(self) -> None:
        owner = "RetryConfig"
        check_int(owner, "max_attempts", self.max_attempts, minimum=1)
        _check_number(owner, "base", self.base, _finite_from(0), ">= 0 seconds")
        _check_number(owner, "cap", self.cap, _finite_from(self.base), f">= base ({self.base} s)")
        if isinstance(self.retry_on, str) or not isinstance(self.retry_on, Collection):
            raise ValueError(f"{owner}.retry_on must be a set of outcome kinds, got {self.retry_on!r}")
        object.__setattr__(self, "retry_on", frozenset(self.retry_on))
        unknown = sorted(map(str, self.retry_on - RETRYABLE_KINDS))
        if unknown:
            allowed = ", ".join(sorted(RETRYABLE_KINDS))
            raise ValueError(
                f"{owner}.retry_on may hold only {allowed} (4xx is never retried), got {', '.join(unknown)}"
            )
        _check_number(owner, "max_retry_after", self.max_retry_after, _finite_from(0), ">= 0 seconds")
        if self.methods is not None:
            methods = self.methods
            if isinstance(methods, str) or not isinstance(methods, Collection):
                raise ValueError(f"{owner}.methods must be a set of HTTP methods or None, got {methods!r}")
            bad = sorted(repr(m) for m in methods if not isinstance(m, str) or not m.isalpha())
            if bad:
                got = ", ".join(bad)
                raise ValueError(f"{owner}.methods must hold HTTP method names like GET, got {got}")
            object.__setattr__(self, "methods", frozenset(m.upper() for m in methods))

    def may_resend(self, method: str, kind: str) -> bool:
        """Whether a request with `method` that ended as `kind` may be sent again without risking the
        server doing its work twice."""
        return kind in BEFORE_SEND_KINDS or self.methods is None or method.upper() in self.methods

    @classmethod
    def naive(cls, attempts: int = 3) -> RetryConfig:
        """What a naive client does: retry every server failure at once, with no budget. (It still sends
        only idempotent methods twice: the lab shows the storm, not duplicated work.)"""
        return cls(
            max_attempts=attempts,
            base=0.0,
            cap=0.0,
            retry_on=RETRYABLE_KINDS,
            respect_retry_after=False,
            budget=None,
        )

    @property
    def wait(self) -> FullJitter:
        return FullJitter(self.base, self.cap)


class Retry(BasePolicy):
    """Re-sends a failed call as a copy with `attempt + 1`, so every attempt is labelled.

    Emits `retry(call, delay)` for each retry (the new attempt's call, and the seconds it waits first).

    When the budget says no, the caller gets the failed outcome as it is: it is a real server failure,
    already reported as a wire attempt, and turning it into a shed would move it into the "client held
    back" column. The retry that did not happen is what was held back: it is announced as a `shed`
    event (the would-be attempt's call, `RetryBudgetExhausted`, cause `budget`), so it gets its own
    stats row, and counted in `budget_denials`. That shed outcome is announced only, never returned.

    Every other refuser of a retry behaves the same: when the breaker, a limiter, the socket pool, the
    send-by deadline or the client's own machine sheds a retry, the shed is announced by the policy that
    made it (its own stats row), and the call ends as the last failure that reached the server. Only a
    call whose first attempt was shed ends as a shed: a call that reached the server and failed ends as
    that server failure, whatever refuses its retry (docs/accounting.md).

    Counters: `logical_calls`, `attempts` (sent to the next layer), `retries`, `budget_denials`;
    `amplification` = attempts / logical calls. The budget's `balance` is a gauge.
    """

    name = "retry"

    def __init__(
        self,
        config: RetryConfig | None = None,
        *,
        rng: random.Random | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.config = config or RetryConfig()
        self.rng = rng or random.Random()
        self.wall_clock = wall_clock
        self.budget = RetryBudget(self.config.budget) if self.config.budget is not None else None
        self._wait = self.config.wait
        self.logical_calls = 0
        self.attempts = 0
        self.retries = 0
        self.budget_denials = 0

    @property
    def amplification(self) -> float:
        """Attempts sent per logical call (1.0 means no retries)."""
        return self.attempts / self.logical_calls if self.logical_calls else 1.0

    def execute(self, call: Call, proceed: Next) -> Outcome:
        self.logical_calls += 1
        if self.budget is not None:
            self.budget.deposit(self.clock.now())
        retries_done = 0
        failed: Outcome | None = None  # the last attempt that reached the server (and failed)
        while True:
            self.attempts += 1
            outcome = proceed(call)
            if outcome.error is None:
                return outcome  # answered: final (`retry_on` never holds "ok"), the common case first
            if failed is not None and outcome.shed:
                return failed  # an inner policy refused the retry: the call ends as the failure it retried
            failed = outcome if outcome.reached_wire else None
            delay = self._next_delay(outcome, call, retries_done)
            if delay is None:
                return outcome
            retry = dataclasses.replace(call, attempt=call.attempt + 1)
            if self.budget is not None and not self.budget.try_withdraw(self.clock.now()):
                self.budget_denials += 1
                self.shed(retry, RetryBudgetExhausted())
                return outcome
            call = retry
            self.retries += 1
            retries_done += 1
            self.events.emit("retry", call, delay)
            if delay > 0:
                self.clock.sleep(delay)

    def _next_delay(self, outcome: Outcome, call: Call, retries_done: int) -> float | None:
        """Seconds to wait before the next attempt, or None if this outcome is final."""
        cfg = self.config
        if outcome.kind not in cfg.retry_on or retries_done + 1 >= cfg.max_attempts:
            return None
        if not cfg.may_resend(call.method, outcome.kind):
            return None
        delay = self._wait(retries_done, self.rng)
        if cfg.respect_retry_after:
            asked = parse_retry_after(outcome.header(RETRY_AFTER_HEADER), self.wall_clock())
            if asked is not None:
                if asked > cfg.max_retry_after:
                    return None
                delay = max(delay, asked)
        remaining = call.sendable(self.clock.now())  # a retry sent later would be shed anyway
        if remaining is not None and delay >= remaining:
            return None
        return delay
