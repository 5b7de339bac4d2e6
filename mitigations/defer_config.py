"""What `Defer` keeps and how it drains: its config value, and which sheds are deferrable at all.

A module of its own because the runner's flags (`locust_plugin.pipelines`) and the tests build a
`DeferConfig` without needing the policy, and both halves of the policy (`defer`, `defer_replay`) ask the
same question of an outcome: is it a shed that a limiter decided, so that waiting can turn it into an
answer (`deferrable`)?
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mitigations._checks import check_choice, check_int, check_seconds
from mitigations.core import Outcome, Shed
from mitigations.defer_checks import default_directory

DEFERRABLE_CAUSES = frozenset({"throttle", "adaptive", "sre-throttle", "circuit-open"})
PRIORITIES = ("fresh", "deferred")


@dataclass(frozen=True)
class DeferConfig:
    """Where the queue lives and how it drains.

    `directory`: one SQLite file per client class in it. `max_age`: seconds from launch after which a
    queued call is expired. `max_queue`: calls held at most. `priority`: `fresh` or `deferred` (see
    the `defer` module doc). `drain_every`: the drainer's tick in seconds; None runs no drainer greenlet
    (the owner calls `drain_once`, as the FakeClock tests do). `pause`: with priority `fresh`, how long
    replays wait after a fresh call was deferred or a replay was shed again. `private`: the folder is
    the default one in the shared temp directory, so it must belong to this user and be closed to
    others (`defer_checks`).
    """

    directory: Path | str = field(default_factory=default_directory)
    max_age: float = 60.0
    max_queue: int = 10_000
    priority: str = "fresh"
    drain_every: float | None = 0.01
    pause: float = 0.1
    private: bool = False

    def __post_init__(self) -> None:
        check_seconds("DeferConfig", "max_age", self.max_age)
        check_int("DeferConfig", "max_queue", self.max_queue, minimum=1)
        check_choice("DeferConfig", "priority", self.priority, PRIORITIES)
        check_seconds("DeferConfig", "drain_every", self.drain_every, allow_none=True)
        check_seconds("DeferConfig", "pause", self.pause)


def deferrable(outcome: Outcome) -> bool:
    """A shed a limiter (or an open breaker) decided: a free slot later can turn it into an answer."""
    return isinstance(outcome.error, Shed) and outcome.error.cause in DEFERRABLE_CAUSES
