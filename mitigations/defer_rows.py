"""One queued call as a row of the defer queue's table, and the checks a row meets before it is sent again.

A row read from disk may have been written by another version, damaged, or planted by someone who could
write the folder. So every loaded row meets the request checks a fresh call meets
(`mitigations.request.RequestSpec`) and sane numbers, and a row whose replay's outcome is unknown is sent
again only when that cannot do the work twice (`DeferredCall.safe_to_resend`).
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from mitigations.request import MAX_HEADERS, RequestSpec

SCHEMA = """
CREATE TABLE IF NOT EXISTS deferred (
    id INTEGER PRIMARY KEY,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    name TEXT,
    headers TEXT NOT NULL,
    body BLOB,
    launched_epoch REAL NOT NULL,
    max_age_s REAL NOT NULL,
    timeout_s REAL,
    state TEXT NOT NULL DEFAULT 'queued',
    reason TEXT
)
"""
COLUMNS = "id, method, path, name, headers, body, launched_epoch, max_age_s, timeout_s"
OLD_SHAPE = tuple(COLUMNS.split(", "))  # before `state` and `reason`: upgraded in place
SHAPE = (*OLD_SHAPE, "state", "reason")
TABLE = "deferred"
QUEUED, SENDING, IN_DOUBT, BAD = "queued", "sending", "in-doubt", "bad"
# Methods whose repetition does no more than one call (RFC 9110 §9.2.2): safe to send again when a
# replay's outcome is unknown. Anything else is sent again only when it carries an Idempotency-Key.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
IDEMPOTENCY_KEY = "idempotency-key"


def table_shape(db: sqlite3.Connection) -> str | None:
    """None when `db` has Hammerlab's table (either version) or none yet, else what is wrong."""
    found = tuple(row[1] for row in db.execute(f"PRAGMA table_info({TABLE})"))
    if found and found not in (SHAPE, OLD_SHAPE):
        return f"has a table {TABLE!r} with other columns ({', '.join(found)}): not a Hammerlab defer queue"
    return None


@dataclass
class DeferredCall:
    """One queued call, as stored: enough to send it again in another process.

    `launched_epoch` is wall-clock seconds (the monotonic clock does not survive a reboot); `timeout_s`
    is the call's total deadline counted from its start (None: none), given afresh to each replay.
    `launched_at` (not stored) is the launch on the deferring process's own clock, None for a row loaded
    from disk: an epoch near 1.7e9 holds only ~0.2 µs, so going through it would move a call's launch
    and could tip an answer at exactly the SLO over it.
    """

    id: int
    method: str
    path: str
    name: str | None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    launched_epoch: float = 0.0
    max_age_s: float = 60.0
    timeout_s: float | None = None
    state: str = QUEUED
    launched_at: float | None = field(default=None, compare=False)

    def problem(self) -> str | None:
        """Why this row may not be sent, or None: the request checks every fresh call meets, and sane
        numbers. A row read from disk may have been damaged or planted."""
        if not isinstance(self.headers, dict) or len(self.headers) > MAX_HEADERS:
            return f"headers are not an object of at most {MAX_HEADERS} names"
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.headers.items()):
            return "a header name or value is not text"
        if not isinstance(self.method, str) or not isinstance(self.path, str):
            return "method or path is not text"
        if self.body is not None and not isinstance(self.body, bytes):
            return "the body is not bytes"
        if self.name is not None and (not isinstance(self.name, str) or not self.name.isprintable()):
            return "the stats name is not printable text"
        timeout = () if self.timeout_s is None else (self.timeout_s,)
        numbers = (self.launched_epoch, self.max_age_s, *timeout)
        if not all(isinstance(n, int | float) and math.isfinite(n) for n in numbers) or (
            self.timeout_s is not None and self.timeout_s <= 0
        ):
            return "launched_epoch, max_age_s or timeout_s is not a finite number"
        try:
            RequestSpec(self.method, self.path, tuple(self.headers.items()), self.body)
        except ValueError as error:
            return str(error)
        return None

    @property
    def safe_to_resend(self) -> bool:
        """An idempotent method, or a key the server can drop a duplicate by."""
        return self.method in IDEMPOTENT_METHODS or any(
            name.lower() == IDEMPOTENCY_KEY for name in self.headers
        )

    def row(self) -> tuple[Any, ...]:
        return (
            self.id,
            self.method,
            self.path,
            self.name,
            json.dumps(self.headers, sort_keys=True),
            self.body,
            self.launched_epoch,
            self.max_age_s,
            self.timeout_s,
        )

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> DeferredCall:
        """Raises ValueError (bad JSON, say) for a row that cannot even be read as a call."""
        id_, method, path, name, headers, body, launched, max_age, timeout, state = row
        if not isinstance(headers, str):
            raise ValueError("headers are not JSON text")
        return cls(id_, method, path, name, json.loads(headers), body, launched, max_age, timeout, state)


@dataclass
class Loaded:
    """What `DeferStore.load` found: the calls to replay, and the rows it set aside (never sent)."""

    calls: list[DeferredCall] = field(default_factory=list)
    in_doubt: list[DeferredCall] = field(default_factory=list)
    bad: list[tuple[int, str]] = field(default_factory=list)  # (row id, why)
    # The highest id in the file, whatever its state: new calls take ids past it, since a write reusing
    # the id of a row an earlier run set aside would replace that row.
    last_id: int = 0
