"""Client-side adaptive throttling, from the Google SRE book ("Handling Overload").

The client keeps two counts over a sliding window: `requests` it attempted and `accepts` the backend
answered. While the backend accepts everything, `requests == accepts` and nothing is rejected. When it
starts failing, the client rejects new requests locally with probability

    p = max(0, (requests - K * accepts) / (requests + 1))

so that what still goes out is about K times what the backend is accepting. Local rejections count as
requests (as in the book): while the backend stays down, `p` climbs towards 1; as soon as it accepts
again, `p` falls, so the client probes with a trickle instead of going silent like the seed's breaker.

Counting rules:
  - a request is counted when it is attempted (so a backend that hangs raises `p` before any timeout);
  - an accept is counted when the answer arrives: any outcome that does not count against the server
    (`Outcome.is_server_failure`), so a 4xx is an accept (the backend processed it); connect errors,
    resets, timeouts, 503, 429 and other 5xx are not accepts;
  - a call an inner policy shed never reached the backend and is not counted at all, nor is a call that
    raised or was killed (the backend gave no verdict);
  - a 429 is not an accept (an overload answer, see `Outcome.is_server_failure`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from mitigations._checks import check_seconds
from mitigations.core import BasePolicy, Call, Next, Outcome, SreThrottled

_MAX_BUCKETS = 100_000


def _check_number(owner: str, name: str, value: object, ok: Callable[[float], bool], allowed: str) -> None:
    """A real number (not a bool) for which `ok` holds; else one line naming the value and what is allowed."""
    is_number = isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)
    if not is_number or not ok(value):  # type: ignore[arg-type]
        raise ValueError(f"{owner}.{name} must be {allowed}, got {value!r}")


@dataclass(frozen=True)
class SreThrottleConfig:
    """`k`: how many requests per accept may go out (the book: 2; lower is more aggressive).
    `window`: seconds of history (the book: about 2 minutes; the lab shortens it).
    `bucket`: seconds per bucket; the window is kept as `ceil(window / bucket)` buckets, so it spans
    between `window - bucket` and `window` seconds."""

    k: float = 2.0
    window: float = 120.0
    bucket: float = 1.0

    def __post_init__(self) -> None:
        owner = "SreThrottleConfig"
        _check_number(
            owner, "k", self.k, lambda v: 1 <= v < math.inf, ">= 1 (below 1 it rejects healthy traffic)"
        )
        check_seconds(owner, "bucket", self.bucket)
        check_seconds(owner, "window", self.window)
        if self.window < self.bucket:
            raise ValueError(f"{owner}.window must be >= bucket ({self.bucket} s), got {self.window!r}")
        if self.buckets > _MAX_BUCKETS:
            raise ValueError(f"{owner}.window / bucket must be <= {_MAX_BUCKETS} buckets, got {self.buckets}")

    @property
    def buckets(self) -> int:
        return math.ceil(self.window / self.bucket - 1e-9)


class SlidingCounts:
    """Two counters over a window of fixed time buckets in a ring. O(1) per event, amortised."""

    def __init__(self, buckets: int, bucket_seconds: float) -> None:
        self._n = buckets
        self._width = bucket_seconds
        self._requests = [0] * buckets
        self._accepts = [0] * buckets
        self._current: int | None = None  # index (now // width) of the newest bucket
        self.requests = 0
        self.accepts = 0

    def advance(self, now: float) -> None:
        """Drop buckets that have slid out of the window by `now`."""
        index = math.floor(now / self._width)
        if self._current is None:
            self._current = index
            return
        if index <= self._current:
            return
        if index - self._current >= self._n:
            self._requests = [0] * self._n
            self._accepts = [0] * self._n
            self.requests = self.accepts = 0
        else:
            for stale in range(self._current + 1, index + 1):
                slot = stale % self._n
                self.requests -= self._requests[slot]
                self.accepts -= self._accepts[slot]
                self._requests[slot] = self._accepts[slot] = 0
        self._current = index

    def add_request(self, now: float) -> int:
        """Count a request; returns its bucket index, for `remove_request`."""
        self.advance(now)
        assert self._current is not None
        self._requests[self._current % self._n] += 1
        self.requests += 1
        return self._current

    def remove_request(self, index: int, now: float) -> None:
        """Take back a request counted in bucket `index`, unless that bucket has left the window."""
        self.advance(now)
        assert self._current is not None
        slot = index % self._n
        if self._current - index < self._n and self._requests[slot] > 0:
            self._requests[slot] -= 1
            self.requests -= 1

    def add_accept(self, now: float) -> None:
        self.advance(now)
        assert self._current is not None
        self._accepts[self._current % self._n] += 1
        self.accepts += 1


class SreThrottle(BasePolicy):
    """Sheds with `SreThrottled` (cause `sre-throttle`) at the SRE book's rejection probability.

    Gauges: `requests`, `accepts` (in the window), `probability`. Counters: `passed`, `throttled`.
    `rng` is injectable so tests are deterministic; by default each throttle has its own `Random`.
    """

    name = "sre-throttle"

    def __init__(self, config: SreThrottleConfig | None = None, rng: random.Random | None = None) -> None:
        super().__init__()
        self.config = config or SreThrottleConfig()
        self.rng = rng or random.Random()
        self._counts = SlidingCounts(self.config.buckets, self.config.bucket)
        self.passed = 0
        self.throttled = 0

    @property
    def requests(self) -> int:
        self._counts.advance(self.clock.now())
        return self._counts.requests

    @property
    def accepts(self) -> int:
        self._counts.advance(self.clock.now())
        return self._counts.accepts

    @property
    def probability(self) -> float:
        """The chance that the next call is rejected, from the counts in the window now."""
        requests, accepts = self.requests, self.accepts
        return max(0.0, (requests - self.config.k * accepts) / (requests + 1))

    def execute(self, call: Call, proceed: Next) -> Outcome:
        p = self.probability
        bucket = self._counts.add_request(self.clock.now())
        if p > 0 and self.rng.random() < p:
            self.throttled += 1
            return self.shed(call, SreThrottled())
        self.passed += 1
        try:
            outcome = proceed(call)
        except BaseException:
            # Raised or killed (GreenletExit at the end of a test): the backend gave no verdict, and a
            # request left without an accept would raise p against a healthy backend. Take it back.
            self._counts.remove_request(bucket, self.clock.now())
            raise
        if outcome.shed:  # an inner policy held it back: the backend never saw it
            self._counts.remove_request(bucket, self.clock.now())
        elif not outcome.is_server_failure:
            self._counts.add_accept(self.clock.now())
        return outcome
