"""Guard rails for a lab whose clients exist to melt servers: where they may send, and when to stop.

Two rules, plain Python so that the Locust plugin and the comparison runner share them:

- **Loopback only, unless opted in.** `mitigations.checked_url` holds the one rule and the one
  checked-URL value (`remote_problem(url)` is its one-line form); `--allow-remote` or
  `HAMMERLAB_ALLOW_REMOTE=1` opts in, from the sending process's own command line or environment.
- **Stop-loss.** `--abort-on 'METRIC>VALUE for DURATION'` conditions, checked about twice a second
  while the load runs; when one has held for its whole duration the test stops and the process exits
  with `STOP_LOSS_EXIT` (3), naming the condition. With a target that is not on loopback the
  `DEFAULT_REMOTE_ABORT_ON` conditions apply unless the user gives their own (or `--abort-on none`).
  Protecting someone's staging service from the experiment is the point. Anchor: k6's thresholds
  with `abortOnFail` and `delayAbortEval`, a run that stops itself when a limit is crossed.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from mitigations.checked_url import (  # noqa: F401  (the loopback rule's home; re-exported for callers)
    ALLOW_REMOTE_ENV,
    allow_remote_from_env,
    is_local_url,
    is_loopback,
    remote_problem,
)

STOP_LOSS_EXIT = 3
DEFAULT_REMOTE_ABORT_ON = ("server_error_rate>20% for 5s", "p99>5s for 10s", "server_lag_ms>1000 for 5s")
NO_CONDITIONS = "none"

# -- stop-loss conditions ------------------------------------------------------------------------------------

METRICS = {
    "server_error_rate": "%",  # server failures / answers, over the last second
    "p99": "s",  # the 99th percentile latency of answers (from scheduled launch), over the last second
    "server_lag_ms": "",  # the target's event-loop lag, from its latest sample (Hammerlab targets)
}
_CONDITION = re.compile(
    r"\s*(?P<metric>[a-z0-9_]+)\s*(?P<op>>=|>)\s*(?P<value>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>%|ms|s)?"
    r"\s+for\s+(?P<hold>[0-9]+(?:\.[0-9]+)?)\s*s\s*"
)
MAX_HOLD_S = 3600.0


@dataclass(frozen=True)
class AbortCondition:
    """`metric op threshold for hold_s`; the threshold in the metric's own unit (%, ms or s -> ms)."""

    text: str
    metric: str
    op: str
    threshold: float
    hold_s: float

    def over(self, value: float) -> bool:
        return value >= self.threshold if self.op == ">=" else value > self.threshold

    def shown(self, value: float) -> str:
        if self.metric == "server_error_rate":
            return f"{value:.0f}%"
        if self.metric == "p99":
            return f"{value / 1000:.2f} s"
        return f"{value:.0f} ms"


def parse_condition(raw: object) -> AbortCondition:
    """`'server_error_rate>20% for 5s'`, `'p99>5s for 10s'`, `'server_lag_ms>1000 for 5s'`.
    Raises ValueError with one line naming what is wrong."""
    text = str(raw).strip()
    found = _CONDITION.fullmatch(text)
    example = "e.g. 'server_error_rate>20% for 5s', 'p99>5s for 10s' or 'server_lag_ms>1000 for 5s'"
    if not found:
        raise ValueError(f"{text!r} is not a condition: write METRIC>VALUE for Ns, {example}")
    metric, unit = found["metric"], found["unit"] or ""
    if metric not in METRICS:
        raise ValueError(f"{metric!r} is not a stop-loss metric; use one of {', '.join(METRICS)}")
    value, hold = float(found["value"]), float(found["hold"])
    if metric == "server_error_rate":
        if unit not in ("%", ""):
            raise ValueError(f"{text!r}: server_error_rate is a percentage, e.g. 20%")
        if not 0 <= value < 100:
            raise ValueError(f"{text!r}: server_error_rate must be from 0 to 99.99 %")
    elif metric == "p99":
        if unit not in ("s", "ms"):
            raise ValueError(f"{text!r}: give p99 with a unit, e.g. p99>5s or p99>800ms")
        value = value * 1000 if unit == "s" else value
    elif unit not in ("", "ms"):
        raise ValueError(f"{text!r}: {metric} is in milliseconds, e.g. {metric}>1000")
    if not 0.5 <= hold <= MAX_HOLD_S:
        raise ValueError(f"{text!r}: the duration must be from 0.5 to {MAX_HOLD_S:g} s")
    return AbortCondition(text, metric, found["op"], value, hold)


def parse_conditions(raws: Iterable[str] | None, remote: bool) -> tuple[AbortCondition, ...]:
    """The run's conditions: the ones given, `none` for none, or the defaults for a remote target."""
    given = [str(raw).strip() for raw in raws or () if str(raw).strip()]
    if any(raw.lower() == NO_CONDITIONS for raw in given):
        if len(given) > 1:
            raise ValueError("'none' turns the stop-loss off; give it alone")
        return ()
    if not given and remote:
        given = list(DEFAULT_REMOTE_ABORT_ON)
    return tuple(parse_condition(raw) for raw in given)


class StopLoss:
    """Feeds on (time, metric values) samples; `tripped` is the first condition that held for its
    whole duration, with the value that crossed last. Values missing from a sample (no answers in the
    last second, no server samples) neither start nor break a hold."""

    def __init__(self, conditions: Iterable[AbortCondition]) -> None:
        self.conditions = tuple(conditions)
        self.since: dict[str, float | None] = {c.text: None for c in self.conditions}
        self.tripped: tuple[AbortCondition, float] | None = None

    def feed(self, now: float, values: dict[str, float | None]) -> tuple[AbortCondition, float] | None:
        for condition in self.conditions:
            value = values.get(condition.metric)
            if value is None or not math.isfinite(value):
                continue
            if not condition.over(value):
                self.since[condition.text] = None
                continue
            started = self.since[condition.text]
            if started is None:
                self.since[condition.text] = started = now
            if self.tripped is None and now - started >= condition.hold_s:
                self.tripped = (condition, value)
        return self.tripped

    def message(self) -> str:
        if self.tripped is None:
            return ""
        condition, value = self.tripped
        return (
            f"stop-loss: {condition.text} held (last {condition.shown(value)}); stopped the whole test "
            f"(exit code {STOP_LOSS_EXIT})"
        )


class RecentAnswers:
    """Answers of the last `window_s` seconds: (time, latency ms, server failure?), bounded in count."""

    def __init__(self, window_s: float = 1.0, limit: int = 200_000) -> None:
        self.window_s = window_s
        self.items: deque[tuple[float, float, bool]] = deque(maxlen=limit)

    def add(self, now: float, latency_ms: float, server_failure: bool) -> None:
        self.items.append((now, latency_ms, server_failure))

    def values(self, now: float) -> dict[str, float | None]:
        while self.items and self.items[0][0] < now - self.window_s:
            self.items.popleft()
        if not self.items:
            return {"server_error_rate": None, "p99": None}
        latencies = sorted(item[1] for item in self.items)
        failures = sum(1 for item in self.items if item[2])
        rank = max(1, math.ceil(0.99 * len(latencies)))
        return {"server_error_rate": 100.0 * failures / len(self.items), "p99": latencies[rank - 1]}
