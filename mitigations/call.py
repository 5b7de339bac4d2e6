"""A call and its outcome: one logical request as it travels the pipeline, and how it ended.

`Outcome.is_server_failure` is the one predicate every policy that judges the server consults
(see `mitigations.core`'s module doc for the blame rule).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mitigations.errors import HammerError, ServerFailure, Shed


@dataclass
class Call:
    """One logical request as it travels the pipeline.

    `launched_at` is when the launcher *scheduled* it, not when it got going, so latency includes any
    queueing (no coordinated omission). `deadline` is absolute, on the same clock; `None` means none.
    `send_by` is the last moment an attempt may still go on the wire (see the module doc); the pipeline
    stamps it with the deadline, and `None` means until the deadline. `hedge` marks the second copy
    `Hedge` sent of a slow call (its own stats row, never hedged again). `recovered` marks a call an
    earlier run left in `Defer`'s file, as its replay or expiry announces it: the ledger counts it in
    its totals only, since this run never counted its launch under a criticality.
    """

    method: str
    path: str
    launched_at: float
    name: str | None = None
    deadline: float | None = None
    attempt: int = 1
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    send_by: float | None = None
    hedge: bool = False
    recovered: bool = False

    @property
    def label(self) -> str:
        """The stats name: `name` if given, else the path."""
        return self.name or self.path

    def remaining(self, now: float) -> float | None:
        """Seconds left before the deadline, never negative; `None` when there is no deadline."""
        return None if self.deadline is None else max(0.0, self.deadline - now)

    def sendable(self, now: float) -> float | None:
        """Seconds left in which an attempt may still go on the wire, never negative; `None`: no limit."""
        last = self.send_by if self.send_by is not None else self.deadline
        return None if last is None else max(0.0, last - now)


@dataclass(frozen=True)
class Outcome:
    """How a call ended. Exactly one per attempt that returns from the pipeline."""

    call: Call
    finished_at: float
    status: int | None = None
    error: HammerError | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    length: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def shed(self) -> bool:
        return isinstance(self.error, Shed)

    @property
    def reached_wire(self) -> bool:
        return not self.shed

    @property
    def kind(self) -> str:
        """`ok`, a server failure kind (`connect-timeout`, `503`, ...) or `shed:<cause>`."""
        if self.error is None:
            return "ok"
        if isinstance(self.error, Shed):
            return f"shed:{self.error.cause}"
        return self.error.kind

    @property
    def latency(self) -> float:
        """Seconds from scheduled launch to the end of this attempt."""
        return self.finished_at - self.call.launched_at

    def header(self, name: str) -> str | None:
        """A response header, case-insensitively."""
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return None

    @property
    def is_server_failure(self) -> bool:
        """Counts against the server's health (the one predicate every policy consults; see the module
        doc): wire failures, but not a 4xx other than a counted 429, and never a shed or client error."""
        return isinstance(self.error, ServerFailure) and self.error.counts_against_server
