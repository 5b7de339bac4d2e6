"""Counting what the mitigations do, per client class, in one process that runs users.

`ClientStatsCollector` counts every outcome per client class and, when asked, snapshots them with the
ledger's accounting and the policies' gauges:
  - outcomes come from Locust's `request` event, which `LocustReporter` fires once for every pipeline
    `wire` and `shed` event with `context={"client", "kind"}`. Listening there rather than on each
    `runtime.pipeline.events` sees every outcome from the first one: a runtime is built by its class's
    first user, which starts launching at once, before any lazy subscription could attach;
  - gauges are read from the policies themselves at snapshot time: each policy answers `gauges()`
    (`mitigations.core.Gauges`) with its values under the snapshot's names, so this module knows no
    policy type and a new mitigation brings its own.

A `ClientSnapshot` is JSON-safe: in a distributed run the workers send theirs with Locust's own stats
reports (`report_to_master`, every 3 s) to the master's board (`mitigations_board`), which turns them
into the rows of PREFIX_mitigations.csv (`mitigation_rows`; columns in `mitigations.csv_schema`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

UNFINISHED_KIND = "unfinished"
TIMEOUT_KINDS = frozenset({"read-timeout", "connect-timeout", "deadline"})
SHED_PREFIX = "shed:"


@dataclass
class OutcomeCounts:
    """Every outcome of one client class in one process, by kind."""

    wire: int = 0
    wire_failures: int = 0
    timeouts: int = 0
    failures_by_kind: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str) -> None:
        """`kind` is `Outcome.kind`: `ok`, a server-failure kind, or `shed:<cause>`. Only attempts that
        reached the wire are counted here; shed and unfinished calls are the ledger's."""
        if kind.startswith(SHED_PREFIX) or kind == UNFINISHED_KIND:
            return
        self.wire += 1
        if kind != "ok":
            self.wire_failures += 1
            self.failures_by_kind[kind] = self.failures_by_kind.get(kind, 0) + 1
            if kind in TIMEOUT_KINDS:
                self.timeouts += 1


@dataclass(frozen=True)
class ClientSnapshot:
    """One client class in one process at one moment. JSON-safe, so workers can send it to the master."""

    client: str
    at: float
    started_at: float
    concurrent: int = 0
    max_concurrent: int = 0
    launched: int = 0
    completed: int = 0
    skipped: int = 0
    wire: int = 0
    wire_failures: int = 0
    timeouts: int = 0
    failures_by_kind: dict[str, int] = field(default_factory=dict)
    shed_by_cause: dict[str, int] = field(default_factory=dict)
    breaker_state: str | None = None
    breaker_transitions: int | None = None
    recent_transitions: tuple[tuple[float, str, str], ...] = ()
    limit: int | None = None
    throttle_in_flight: int | None = None
    queue_depth: int | None = None
    pool_in_use: int | None = None
    pool_waiting: int | None = None
    ok: int = 0
    server_errors: int = 0
    unfinished: int = 0
    pending: int = 0
    slo_ms: float | None = None
    slo_ok: int = 0
    latency_hdr: str = ""
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    deferred: int | None = None
    replayed: int | None = None
    expired: int | None = None
    defer_queue_depth: int | None = None
    replay_hdr: str | None = None  # HdrHistogram.encode() of the replay delays in ms, as text
    in_doubt: int | None = None
    bad_rows: int | None = None
    kept: int | None = None  # the ledger's `kept`; None without `Defer`
    hedged: int | None = None
    hedge_won: int | None = None
    # --criticality-mix: the ledger's split, {"critical": {...}, "sheddable": {...}} (`criticality_parts`)
    criticality: dict[str, dict[str, Any]] | None = None

    @property
    def shed(self) -> int:
        return sum(self.shed_by_cause.values())

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["recent_transitions"] = [list(item) for item in self.recent_transitions]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClientSnapshot:
        """Raises `ValueError` for anything that is not a snapshot (a worker of another version, say)."""
        if not isinstance(data, Mapping):
            raise ValueError("a client snapshot must be a JSON object")
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        try:
            values["recent_transitions"] = tuple(
                (float(at), str(old), str(new)) for at, old, new in values.get("recent_transitions", ())
            )
            snapshot = cls(**values)
        except (TypeError, ValueError) as error:
            raise ValueError(f"not a client snapshot: {error}") from None
        if not isinstance(snapshot.client, str) or not all(
            isinstance(getattr(snapshot, name), int | float) for name in ("at", "started_at", "launched")
        ):
            raise ValueError("not a client snapshot: client, at, started_at or launched is missing")
        return snapshot

    def same_numbers(self, other: ClientSnapshot) -> bool:
        """Equal apart from the time they were taken."""
        return replace(self, at=0.0) == replace(other, at=0.0)


def criticality_parts(split: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The ledger's per-criticality sub-ledgers as JSON-safe counts and an encoded histogram."""
    return {
        name: {
            "launched": part.launched,
            "ok": part.ok,
            "server_errors": part.server_errors,
            "shed": part.shed,
            "unfinished": part.unfinished,
            "pending": part.pending,
            "slo_ok": part.slo_ok,
            "latency_hdr": part.encoded_histogram(),
        }
        for name, part in split.items()
    }


def read_gauges(policies: Iterable[Any], wall_now: float) -> dict[str, Any]:
    """Every gauge the pipeline's policies report, outermost first. Two policies reporting the same
    name: numbers add up (a throttle's and an adaptive limit's queues are one `queue_depth`), anything
    else keeps the first value. A gauge no policy reports stays None: an empty CSV cell."""
    found: dict[str, Any] = {}
    for policy in policies:
        for name, value in policy.gauges(wall_now).items():
            before = found.get(name)
            if before is None:
                found[name] = value
            elif _is_number(before) and _is_number(value):
                found[name] = before + value
    return found


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class ClientStatsCollector:
    """Counts outcomes per client class in this process and snapshots them with the runtimes' gauges.

    `reset` at every test start (the runtimes are rebuilt then too); `run` numbers the tests, so the
    master can tell a late report from the previous test apart from the current one.
    """

    def __init__(self, wall: Any = time.time) -> None:
        self.wall = wall
        self.counts: dict[str, OutcomeCounts] = {}
        self.run = 0
        self.started_at = wall()

    def reset(self) -> None:
        self.counts = {}
        self.run += 1
        self.started_at = self.wall()

    def on_request(self, context: Any = None, **_: Any) -> None:
        """Listener for Locust's `request` event; counts only the outcomes our reporter fired."""
        if not isinstance(context, dict):
            return
        client, kind = context.get("client"), context.get("kind")
        if not isinstance(client, str) or not isinstance(kind, str):
            return
        counts = self.counts.get(client)
        if counts is None:
            counts = self.counts[client] = OutcomeCounts()
        counts.add(kind)

    def snapshot(self, runtimes: Mapping[str, Any]) -> list[ClientSnapshot]:
        """Every client class seen this test, sorted by name."""
        now = self.wall()
        result = []
        for name in sorted(set(runtimes) | set(self.counts)):
            runtime = runtimes.get(name)
            counts = self.counts.get(name, OutcomeCounts())
            gauges = read_gauges((getattr(runtime, "policies", {}) or {}).values(), now)
            ledger = getattr(runtime, "ledger", None)
            if ledger is not None:
                gauges.update(
                    ok=ledger.ok,
                    server_errors=ledger.server_errors,
                    unfinished=ledger.unfinished,
                    pending=ledger.pending,
                    slo_ms=ledger.slo_ms,
                    slo_ok=ledger.slo_ok,
                    latency_hdr=ledger.encoded_histogram(),
                    shed_by_cause=dict(ledger.shed_by_cause),
                    errors_by_kind=dict(ledger.errors_by_kind),
                )
                if gauges.get("deferred") is not None:
                    gauges["kept"] = ledger.kept
                if ledger.split is not None:
                    gauges["criticality"] = criticality_parts(ledger.split)
            result.append(
                ClientSnapshot(
                    client=name,
                    at=round(now, 3),
                    started_at=round(self.started_at, 3),
                    concurrent=getattr(runtime, "concurrent", 0),
                    max_concurrent=getattr(runtime, "max_concurrent", 0),
                    launched=getattr(runtime, "launched", 0),
                    completed=getattr(runtime, "completed", 0),
                    skipped=getattr(runtime, "skipped", 0),
                    wire=counts.wire,
                    wire_failures=counts.wire_failures,
                    timeouts=counts.timeouts,
                    failures_by_kind=dict(counts.failures_by_kind),
                    **gauges,
                )
            )
        return result
