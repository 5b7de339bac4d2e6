"""What the mitigations are doing: per client class, per process, and summed across Locust workers.

Two halves, both plain Python so they are unit-testable without a running Locust:

- `ClientStatsCollector` (one per process that runs users) counts every outcome per client class and
  reads the policies' gauges when asked for a snapshot:
  - outcomes come from Locust's `request` event, which `LocustReporter` fires once for every pipeline
    `wire` and `shed` event with `context={"client", "kind"}`. Listening there rather than on each
    `runtime.pipeline.events` sees every outcome from the first one: a runtime is built by its class's
    first user, which starts launching at once, before any lazy subscription could attach;
  - gauges and cumulative counters are read from the policies themselves at snapshot time:
    `CircuitBreaker.state/transitions/recent_transitions` (its `state` events, counted by the breaker),
    `AdaptiveLimit.limit` (the value of its last `limit` event), `Throttle.in_flight/queued`,
    `SocketPool.in_use/waiting`.
- `MitigationsBoard` (on the master, or the single local process) keeps the latest snapshot per worker
  and client, works out rates between a worker's consecutive snapshots, and adds the summed `all` rows.

`PREFIX_mitigations.csv` is a contract (the comparison runner reads it). Long format: one row per sample
per worker per client, plus one row per client with worker `all` that sums the workers. Columns, in order:

  timestamp                  unix seconds (3 decimals) of the sample
  elapsed_s                  seconds since the test started
  worker                     `local` in a single process, else the Locust worker id; `all` for the sums
  client                     the user class, e.g. ThrottledClient
  concurrent                 the client's own in-flight count, as the seed logged it
  max_concurrent             its highest value this test (in `all`: the sum of the workers' highs)
  launched_total             logical calls launched
  launched_per_s             launched per second over the last second or so (see `rate_baseline`)
  completed_total            logical calls finished (answered, failed or shed)
  wire_total                 attempts that reached the wire (retries included)
  wire_failures_total        of those, the ones that failed (any server-failure kind, 4xx included)
  shed_total                 calls a mitigation held back
  shed_per_s                 shed per second, over the same interval
  shed_by_cause              like `circuit-open=3;throttle=12`, causes sorted; empty if none
  breaker_state              closed, open or half-open; empty without a breaker; in `all` when the
                             workers differ: `closed=1;open=1`
  breaker_transitions_total  breaker state changes; empty without a breaker
  limit                      the adaptive concurrency limit; empty without one (in `all`: the sum)
  throttle_in_flight         calls holding a throttle slot; empty without a throttle
  queue_depth                calls waiting in a limiter's queue (throttle or adaptive); empty without
  pool_in_use                sockets held from the client's pool; empty without a socket pool
  pool_waiting               calls waiting for a pooled socket; empty without a socket pool
  timeouts_total             wire outcomes of kind read-timeout, connect-timeout or deadline

Appended for the accounting (`locust_plugin.ledger`; logical calls, each counted once by its final
outcome, so `launched_total = ok_total + server_errors_total + shed_total + unfinished_total + concurrent`
on every row, and with nothing in flight at the end, without `concurrent`):
  ok_total                   calls answered without error
  server_errors_total        calls whose final attempt failed on the wire (any kind)
  server_error_kinds         those calls by their final kind, like `connect-timeout=3;503=12`
  unfinished_total           calls still in flight when the test's drain ran out
  skipped_total              launch slots the generator missed (never launched, never timed)
  slo_ms                     the SLO the next column counts against
  slo_ok_total               calls answered 2xx within slo_ms of their scheduled launch
  p50_ms p95_ms p99_ms p999_ms max_ms
                             latency of answered calls (ok or failed) from the scheduled launch, from
                             an HdrHistogram (3 significant digits); in `all`, the workers' histograms
                             merged, not their percentiles averaged

Appended for `Defer` (docs/defer.md); empty without a defer layer:
  deferred_total             calls `Defer` kept for later (each also counts in shed_total, cause
                             `deferred`)
  replayed_total             deferred calls replayed to a final outcome (ok or not)
  expired_total              deferred calls dropped unsent, older than --defer-max-age-s
  defer_queue_depth          calls held in the defer queue now (queued, being written or replayed)
  replay_p50_ms              replay delay, launch to final answer, from an HdrHistogram (3 significant
  replay_p95_ms                digits) of every replay this test; in `all`, the workers' histograms
  replay_p99_ms                merged
  replay_max_ms
  kept_total                 of unfinished_total: deferred calls still queued when the test's drain
                             ran out, left on disk for the next run (`lost` = launched - ok - kept)

`shed_total` and `shed_by_cause` count calls whose final outcome was shed (the ledger), not shed events:
a retry the budget refused is a `SHED ... [budget]` row in Locust's stats but ends its call as the
failure it was retrying.

In a distributed run the workers' numbers arrive with Locust's own stats reports (`report_to_master`,
every 3 s), so a worker's rows change at that pace; a single process is sampled every
`--server-sample-ms`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from functools import cached_property
from typing import Any

from locust_plugin.ledger import LatencySummary, encode_histogram, merge_encoded
from mitigations.adaptive import AdaptiveLimit
from mitigations.breaker import CircuitBreaker
from mitigations.defer import Defer
from mitigations.socket_pool import SocketPool
from mitigations.throttle import Throttle

MITIGATION_COLUMNS = (
    "timestamp",
    "elapsed_s",
    "worker",
    "client",
    "concurrent",
    "max_concurrent",
    "launched_total",
    "launched_per_s",
    "completed_total",
    "wire_total",
    "wire_failures_total",
    "shed_total",
    "shed_per_s",
    "shed_by_cause",
    "breaker_state",
    "breaker_transitions_total",
    "limit",
    "throttle_in_flight",
    "queue_depth",
    "pool_in_use",
    "pool_waiting",
    "timeouts_total",
    "ok_total",
    "server_errors_total",
    "server_error_kinds",
    "unfinished_total",
    "skipped_total",
    "slo_ms",
    "slo_ok_total",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "p999_ms",
    "max_ms",
    "deferred_total",
    "replayed_total",
    "expired_total",
    "defer_queue_depth",
    "replay_p50_ms",
    "replay_p95_ms",
    "replay_p99_ms",
    "replay_max_ms",
    "kept_total",
)
UNFINISHED_KIND = "unfinished"
TIMEOUT_KINDS = frozenset({"read-timeout", "connect-timeout", "deadline"})
SHED_PREFIX = "shed:"
LOCAL_WORKER = "local"
ALL_WORKERS = "all"
RECENT_TRANSITIONS = 3
RATE_WINDOW_S = 1.0
TRAIL = 64
HISTORY_ROWS = 20_000


def join_counts(counts: Mapping[str, int]) -> str:
    """`{"throttle": 12, "circuit-open": 3}` → `circuit-open=3;throttle=12` (sorted, zeros left out)."""
    return ";".join(f"{key}={counts[key]}" for key in sorted(counts) if counts[key])


def _add_counts(into: dict[str, int], more: Mapping[str, int]) -> None:
    for key, value in more.items():
        into[key] = into.get(key, 0) + value


# -- one process: counting outcomes and reading gauges -----------------------------------------------------


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
    slo_ms: float | None = None
    slo_ok: int = 0
    latency_hdr: str = ""
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    deferred: int | None = None
    replayed: int | None = None
    expired: int | None = None
    defer_queue_depth: int | None = None
    replay_hdr: str | None = None  # HdrHistogram.encode() of the replay delays in ms, as text
    kept: int | None = None  # the ledger's `kept`; None without `Defer`

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


def read_policies(policies: Mapping[str, Any], wall_now: float) -> dict[str, Any]:
    """The gauges of whichever policies a pipeline has; absent policies give None (an empty CSV cell)."""
    found: dict[str, Any] = {}
    queue: int | None = None
    for policy in policies.values():
        if isinstance(policy, CircuitBreaker) and "breaker_state" not in found:
            found["breaker_state"] = policy.state
            found["breaker_transitions"] = sum(policy.transitions.values())
            offset = wall_now - policy.clock.now()  # the breaker's clock is monotonic
            found["recent_transitions"] = tuple(
                (round(t.at + offset, 3), t.old, t.new)
                for t in list(policy.recent_transitions)[-RECENT_TRANSITIONS:]
            )
        elif isinstance(policy, Throttle) and "throttle_in_flight" not in found:
            found["throttle_in_flight"] = policy.in_flight
            queue = (queue or 0) + policy.queued
        elif isinstance(policy, AdaptiveLimit) and "limit" not in found:
            found["limit"] = policy.limit
            queue = (queue or 0) + policy.queued
        elif isinstance(policy, SocketPool) and "pool_in_use" not in found:
            found["pool_in_use"] = policy.in_use
            found["pool_waiting"] = policy.waiting
        elif isinstance(policy, Defer) and "deferred" not in found:
            found["deferred"] = policy.deferred
            found["replayed"] = policy.replayed
            found["expired"] = policy.expired
            found["defer_queue_depth"] = policy.depth
            found["replay_hdr"] = encode_histogram(policy.replay_delays) or None
    found["queue_depth"] = queue
    return found


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
            gauges = read_policies(getattr(runtime, "policies", {}) or {}, now)
            ledger = getattr(runtime, "ledger", None)
            if ledger is not None:
                gauges.update(
                    ok=ledger.ok,
                    server_errors=ledger.server_errors,
                    unfinished=ledger.unfinished,
                    slo_ms=ledger.slo_ms,
                    slo_ok=ledger.slo_ok,
                    latency_hdr=ledger.encoded_histogram(),
                    shed_by_cause=dict(ledger.shed_by_cause),
                    errors_by_kind=dict(ledger.errors_by_kind),
                )
                if gauges.get("deferred") is not None:
                    gauges["kept"] = ledger.kept
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


# -- rows: per worker, and summed -------------------------------------------------------------------------


def per_second(before: float, after: float, seconds: float) -> float | None:
    """A counter's rate; None when there is no interval, or the counter went backwards (a new run)."""
    if seconds <= 0 or after < before:
        return None
    return (after - before) / seconds


@dataclass(frozen=True)
class Rates:
    launched_per_s: float | None = None
    shed_per_s: float | None = None


def rates_between(previous: ClientSnapshot | None, current: ClientSnapshot) -> Rates:
    """Rates since the previous snapshot of the same run; for the first, since the run started (every
    counter was 0 then: the runtimes are rebuilt at test start)."""
    if previous is None or previous.started_at != current.started_at:
        seconds = current.at - current.started_at
        return Rates(per_second(0, current.launched, seconds), per_second(0, current.shed, seconds))
    seconds = current.at - previous.at
    return Rates(
        per_second(previous.launched, current.launched, seconds),
        per_second(previous.shed, current.shed, seconds),
    )


def rate_baseline(trail: Iterable[ClientSnapshot], at: float) -> ClientSnapshot | None:
    """The newest earlier snapshot at least `RATE_WINDOW_S` old, else the oldest one there is: rates
    then span about a second even when samples come every 250 ms (or an extra one right after the
    last), and span the gap between reports when a worker reports every 3 s."""
    candidates = list(trail)
    old_enough = [snap for snap in candidates if snap.at <= at - RATE_WINDOW_S]
    if old_enough:
        return old_enough[-1]
    return candidates[0] if candidates else None


@dataclass(frozen=True)
class MitigationRow:
    """One CSV row (see the module doc), plus `failures_by_kind`, `recent_transitions` and `skipped`
    for the web UI."""

    timestamp: float
    elapsed_s: float
    worker: str
    client: str
    concurrent: int
    max_concurrent: int
    launched_total: int
    launched_per_s: float | None
    completed_total: int
    wire_total: int
    wire_failures_total: int
    shed_total: int
    shed_per_s: float | None
    shed_by_cause: dict[str, int]
    breaker_state: str | None
    breaker_transitions_total: int | None
    limit: int | None
    throttle_in_flight: int | None
    queue_depth: int | None
    pool_in_use: int | None
    pool_waiting: int | None
    timeouts_total: int
    failures_by_kind: dict[str, int] = field(default_factory=dict)
    recent_transitions: tuple[tuple[float, str, str], ...] = ()
    skipped: int = 0
    ok_total: int = 0
    server_errors_total: int = 0
    unfinished_total: int = 0
    slo_ms: float | None = None
    slo_ok_total: int = 0
    latency_hdr: str = ""
    errors_by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def server_error_kinds(self) -> str:
        return join_counts(self.errors_by_kind)

    @property
    def skipped_total(self) -> int:
        return self.skipped

    @cached_property
    def latency(self) -> LatencySummary:
        return LatencySummary.of(merge_encoded([self.latency_hdr]))
    deferred_total: int | None = None
    replayed_total: int | None = None
    expired_total: int | None = None
    defer_queue_depth: int | None = None
    replay_hdr: str | None = None
    kept_total: int | None = None

    @cached_property
    def _replay(self) -> LatencySummary:
        """The replay delays, decoded once per row. `Defer` records milliseconds, where the ledger
        records microseconds, so `_replay_ms` scales LatencySummary's fields back."""
        return LatencySummary.of(merge_encoded([self.replay_hdr or ""]))

    def _replay_ms(self, name: str) -> int | None:
        value = getattr(self._replay, name)
        return None if value is None else round(value * 1000)

    @property
    def replay_p50_ms(self) -> int | None:
        return self._replay_ms("p50_ms")

    @property
    def replay_p95_ms(self) -> int | None:
        return self._replay_ms("p95_ms")

    @property
    def replay_p99_ms(self) -> int | None:
        return self._replay_ms("p99_ms")

    @property
    def replay_max_ms(self) -> int | None:
        return self._replay_ms("max_ms")

    @classmethod
    def of(
        cls, timestamp: float, elapsed_s: float, worker: str, snap: ClientSnapshot, rates: Rates
    ) -> MitigationRow:
        return cls(
            timestamp=timestamp,
            elapsed_s=elapsed_s,
            worker=worker,
            client=snap.client,
            concurrent=snap.concurrent,
            max_concurrent=snap.max_concurrent,
            launched_total=snap.launched,
            launched_per_s=rates.launched_per_s,
            completed_total=snap.completed,
            wire_total=snap.wire,
            wire_failures_total=snap.wire_failures,
            shed_total=snap.shed,
            shed_per_s=rates.shed_per_s,
            shed_by_cause=dict(snap.shed_by_cause),
            breaker_state=snap.breaker_state,
            breaker_transitions_total=snap.breaker_transitions,
            limit=snap.limit,
            throttle_in_flight=snap.throttle_in_flight,
            queue_depth=snap.queue_depth,
            pool_in_use=snap.pool_in_use,
            pool_waiting=snap.pool_waiting,
            timeouts_total=snap.timeouts,
            failures_by_kind=dict(snap.failures_by_kind),
            recent_transitions=snap.recent_transitions,
            skipped=snap.skipped,
            ok_total=snap.ok,
            server_errors_total=snap.server_errors,
            unfinished_total=snap.unfinished,
            slo_ms=snap.slo_ms,
            slo_ok_total=snap.slo_ok,
            latency_hdr=snap.latency_hdr,
            errors_by_kind=dict(snap.errors_by_kind),
            deferred_total=snap.deferred,
            replayed_total=snap.replayed,
            expired_total=snap.expired,
            defer_queue_depth=snap.defer_queue_depth,
            replay_hdr=snap.replay_hdr,
            kept_total=snap.kept,
        )

    def csv_row(self) -> dict[str, str]:
        def cell(value: Any) -> str:
            if value is None:
                return ""
            if isinstance(value, float):
                return f"{value:.2f}"
            return str(value)

        latency = self.latency
        row = {
            "timestamp": f"{self.timestamp:.3f}",
            "elapsed_s": f"{self.elapsed_s:.3f}",
            **{name: cell(getattr(self, name)) for name in MITIGATION_COLUMNS[2:13]},
            "shed_by_cause": join_counts(self.shed_by_cause),
            **{name: cell(getattr(self, name)) for name in MITIGATION_COLUMNS[14:_LATENCY_AT]},
        }
        row.update({name: _ms(getattr(latency, name)) for name in MITIGATION_COLUMNS[_LATENCY_AT:_DEFER_AT]})
        row.update({name: cell(getattr(self, name)) for name in MITIGATION_COLUMNS[_DEFER_AT:]})
        return row


def _ms(value: float | None) -> str:
    """A latency to the microsecond the histogram keeps (3 significant digits), never rounded further."""
    return "" if value is None else f"{value:.3f}"


_LATENCY_AT = MITIGATION_COLUMNS.index("p50_ms")
_DEFER_AT = MITIGATION_COLUMNS.index("deferred_total")


def _sum_optional(values: Iterable[int | float | None]) -> Any:
    present = [value for value in values if value is not None]
    return sum(present) if present else None


def breaker_summary(states: Iterable[str | None]) -> str | None:
    """One state when every worker agrees, else the count of each: `closed=1;open=1`."""
    counts: dict[str, int] = {}
    for state in states:
        if state is not None:
            counts[state] = counts.get(state, 0) + 1
    if not counts:
        return None
    return next(iter(counts)) if len(counts) == 1 else join_counts(counts)


def sum_rows(rows: list[MitigationRow], timestamp: float, elapsed_s: float) -> MitigationRow:
    """The `all` row of one client: the sum of its per-worker rows."""
    shed: dict[str, int] = {}
    failures: dict[str, int] = {}
    errors: dict[str, int] = {}
    for row in rows:
        _add_counts(shed, row.shed_by_cause)
        _add_counts(failures, row.failures_by_kind)
        _add_counts(errors, row.errors_by_kind)
    transitions = sorted((t for row in rows for t in row.recent_transitions), key=lambda t: t[0])
    return MitigationRow(
        timestamp=timestamp,
        elapsed_s=elapsed_s,
        worker=ALL_WORKERS,
        client=rows[0].client,
        concurrent=sum(r.concurrent for r in rows),
        max_concurrent=sum(r.max_concurrent for r in rows),
        launched_total=sum(r.launched_total for r in rows),
        launched_per_s=_sum_optional(r.launched_per_s for r in rows),
        completed_total=sum(r.completed_total for r in rows),
        wire_total=sum(r.wire_total for r in rows),
        wire_failures_total=sum(r.wire_failures_total for r in rows),
        shed_total=sum(r.shed_total for r in rows),
        shed_per_s=_sum_optional(r.shed_per_s for r in rows),
        shed_by_cause=shed,
        breaker_state=breaker_summary(r.breaker_state for r in rows),
        breaker_transitions_total=_sum_optional(r.breaker_transitions_total for r in rows),
        limit=_sum_optional(r.limit for r in rows),
        throttle_in_flight=_sum_optional(r.throttle_in_flight for r in rows),
        queue_depth=_sum_optional(r.queue_depth for r in rows),
        pool_in_use=_sum_optional(r.pool_in_use for r in rows),
        pool_waiting=_sum_optional(r.pool_waiting for r in rows),
        timeouts_total=sum(r.timeouts_total for r in rows),
        failures_by_kind=failures,
        recent_transitions=tuple(transitions[-RECENT_TRANSITIONS:]),
        skipped=sum(r.skipped for r in rows),
        ok_total=sum(r.ok_total for r in rows),
        server_errors_total=sum(r.server_errors_total for r in rows),
        unfinished_total=sum(r.unfinished_total for r in rows),
        slo_ms=next((r.slo_ms for r in rows if r.slo_ms is not None), None),
        slo_ok_total=sum(r.slo_ok_total for r in rows),
        latency_hdr=_merged_hdr([r.latency_hdr for r in rows]),
        errors_by_kind=errors,
        deferred_total=_sum_optional(r.deferred_total for r in rows),
        replayed_total=_sum_optional(r.replayed_total for r in rows),
        expired_total=_sum_optional(r.expired_total for r in rows),
        defer_queue_depth=_sum_optional(r.defer_queue_depth for r in rows),
        replay_hdr=_merged_hdr([r.replay_hdr or "" for r in rows]) or None,
        kept_total=_sum_optional(r.kept_total for r in rows),
    )


def _merged_hdr(encoded: list[str]) -> str:
    present = [text for text in encoded if text]
    if len(present) <= 1:
        return present[0] if present else ""
    return encode_histogram(merge_encoded(present))


class MitigationsBoard:
    """The latest numbers of every worker and client, on the master (or the single local process).

    `update(worker, run, snapshots)` takes a worker's report; `rows(...)` is one complete sample: a row
    per worker per client, then one `all` row per client. `begin_test` forgets the last test and ignores
    late reports from it (a report carries the worker's test number, `run`).
    """

    def __init__(self, history: int = HISTORY_ROWS) -> None:
        self.history: deque[MitigationRow] = deque(maxlen=history)
        self._latest: dict[str, dict[str, ClientSnapshot]] = {}
        self._rates: dict[tuple[str, str], Rates] = {}
        self._trails: dict[tuple[str, str], deque[ClientSnapshot]] = {}
        self._runs: dict[str, int] = {}
        self._stale_up_to: dict[str, int] = {}

    @property
    def workers(self) -> list[str]:
        return sorted(self._latest)

    def begin_test(self) -> None:
        self._stale_up_to = dict(self._runs)
        self._latest.clear()
        self._rates.clear()
        self._trails.clear()
        self.history.clear()

    def update(self, worker: str, run: int, snapshots: Iterable[ClientSnapshot]) -> bool:
        """Take a report. Returns True when it changed any number (False too when it was stale)."""
        if run <= self._stale_up_to.get(worker, 0):
            return False
        if self._runs.get(worker) != run:
            self._latest[worker] = {}
            self._runs[worker] = run
        latest = self._latest.setdefault(worker, {})
        changed = False
        for snap in snapshots:
            previous = latest.get(snap.client)
            if previous is not None and snap.at <= previous.at:
                continue
            if previous is None or not previous.same_numbers(snap):
                changed = True
            trail = self._trails.setdefault((worker, snap.client), deque(maxlen=TRAIL))
            if previous is None:
                trail.clear()
            self._rates[(worker, snap.client)] = rates_between(rate_baseline(trail, snap.at), snap)
            trail.append(snap)
            latest[snap.client] = snap
        return changed

    def rows(self, timestamp: float, elapsed_s: float) -> list[MitigationRow]:
        """One sample of every worker's latest numbers, and the sums. Also kept in `history`. Each sample
        gets its own timestamp (a millisecond later than the last if need be), so readers can group by it."""
        timestamp, elapsed_s = round(timestamp, 3), round(max(0.0, elapsed_s), 3)
        if self.history and timestamp <= self.history[-1].timestamp:
            bump = round(self.history[-1].timestamp + 0.001 - timestamp, 3)
            timestamp, elapsed_s = round(timestamp + bump, 3), round(elapsed_s + bump, 3)
        per_worker: list[MitigationRow] = []
        for worker in sorted(self._latest):
            for client in sorted(self._latest[worker]):
                snap = self._latest[worker][client]
                rates = self._rates.get((worker, client), Rates())
                per_worker.append(MitigationRow.of(timestamp, elapsed_s, worker, snap, rates))
        by_client: dict[str, list[MitigationRow]] = {}
        for row in per_worker:
            by_client.setdefault(row.client, []).append(row)
        summed = [sum_rows(by_client[client], timestamp, elapsed_s) for client in sorted(by_client)]
        rows = per_worker + summed
        self.history.extend(rows)
        return rows

    def latest_rows(self) -> list[MitigationRow]:
        """The most recent complete sample from `history` (empty before the first)."""
        if not self.history:
            return []
        last = self.history[-1].timestamp
        found = []
        for row in reversed(self.history):
            if row.timestamp != last:
                break
            found.append(row)
        return list(reversed(found))
