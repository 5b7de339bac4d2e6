"""One summary row per client class, worked out from that class's files only.

Where each number comes from (one source each):
  - the accounting and latency columns (launched, ok, server_errors and their kinds, shed and its
    causes, unfinished, skipped, slo_ms, slo_goodput_rps, slo_attainment, goodput_rps, p50..max_ms):
    the class's last `worker=all` row of PREFIX_mitigations.csv, written after the test's drain, i.e.
    the plugin's ledger (`locust_plugin.ledger`). Logical calls, each counted once by its final outcome,
    so launched = ok + server_errors + shed + unfinished on every row. The percentiles come from an
    HdrHistogram of answered calls (ok or failed) from their scheduled launch, 3 significant digits.
    slo_goodput_rps = 2xx answers within slo_ms / the run's duration; goodput_rps = every ok answer,
    however late, / the same duration: the whole run, drain included (Locust's elapsed time, its
    Aggregated count / Requests/s; with workers, the master's last row's elapsed_s; never less than
    --duration), so a backlog answered after the launch window cannot push goodput past what the server
    served, and SLO goodput (a subset of the ok answers) never exceeds goodput. slo_attainment = the
    same count / the intended calls (launched + skipped). deferred, replayed, expired, kept
    (DeferredClient; else empty): calls kept on disk, replayed, expired unsent, and still on disk at the
    end (part of unfinished). lost = launched - ok - kept (docs/accounting.md).
  - max_client_concurrent: PREFIX_mitigations.csv, the class's `all` rows.
  - server lag, sockets and in-flight: PREFIX_server.csv. The maxima take the server's own peaks
    (peak_lag_ms, peak_in_flight, peak_sockets, since it started: the embedded target is restarted for
    every class, a --host target reset) as well as the samples, because a melting server answers /stats
    late and its worst moments fall between samples. The p95 is over the samples.
  - recovery_s (outage only): comparison/scenarios/outage.py fills it.

Appended after recovery_s (the columns before them keep their order):
  - amplification: attempts on the wire (retries and replays included; PREFIX_mitigations.csv's
    wire_total) per launched logical request (the ledger's launched). 1.00: every request sent once;
    below 1: some were shed or never sent; above: retries.
  - outage_amplification (outage only): comparison/scenarios/outage.py fills it.
  - reduced_capacity_rps (capacity only): C measured while sync_work_ms was changed; goodput_reduced_rps
    and goodput_restored_rps: comparison/scenarios/capacity.py fills them.
  - wasted_work_ratio: the target's CPU spent for clients that had already given up (deadline passed
    when the work finished, or connection closed) over all its /doWork CPU, between the first and the
    last sample of PREFIX_server.csv (empty for a target that does not report it).
  - pre_trigger_slo_goodput_rps, post_trigger_slo_goodput_rps, recovered, peak_share, verdict
    (metastable only; recovery_s too): comparison/scenarios/metastable.py.
  - workers: the client instances (processes with rows of their own in PREFIX_mitigations.csv: 1, or
    N Locust workers whose numbers the master summed into the `all` rows read above).
  - jain_index: with more than one client instance, Jain's fairness index over the instances' SLO
    goodputs (each worker's own final slo_ok_total, PREFIX_mitigations.csv), the same number as the
    fleet section's; empty for a single process. A gate can hold a fleet to it
    (`--check 'jain_index >= 0.9'`).
  - lost_with_worker, lost_workers: calls in flight on workers lost mid-run, and who (lost_workers.py).

With `--criticality-mix`, before a scenario's own: SLO goodput, attainment and p99 of the critical and
the sheddable calls apart (`comparison.criticality`, docs/criticality.md). Absent without a mix.

A scenario fills its own columns in its `adjust` hook (comparison/scenarios/); a new one appends its own
after these (`Summary.extra`), so the columns above keep their order.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from comparison import lost_workers
from comparison.cells import cell, sort_counts
from comparison.counters import jain, percentile, rate_between, value_at  # noqa: F401 (benchmarks import them)
from comparison.criticality import criticality_cells
from comparison.plan import LoadPlan
from comparison.readers import (
    ClassFiles,
    ClientRow,
    ServerRow,
    read_client,
    read_instances,
    read_server,
    read_stats,
)
from mitigations.csv_schema import skip_share, too_many_skipped

COLUMNS = (
    "client",
    "scenario",
    "capacity_rps",
    "offered_rps",
    "slo_ms",
    "slo_goodput_rps",
    "slo_attainment",
    "goodput_rps",
    "launched",
    "ok",
    "server_errors",
    "server_error_kinds",
    "shed",
    "shed_kinds",
    "unfinished",
    "skipped",
    "deferred",
    "replayed",
    "expired",
    "kept",
    "lost",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "p999_ms",
    "max_ms",
    "max_client_concurrent",
    "server_max_lag_ms",
    "server_p95_lag_ms",
    "server_max_sockets",
    "server_max_in_flight",
    "recovery_s",
    "amplification",
    "outage_amplification",
    "reduced_capacity_rps",
    "goodput_reduced_rps",
    "goodput_restored_rps",
    "workers",
    "wasted_work_ratio",
    "pre_trigger_slo_goodput_rps",
    "post_trigger_slo_goodput_rps",
    "recovered",
    "peak_share",
    "verdict",
    "jain_index",
    "lost_with_worker",
    "lost_workers",
)
RECOVERY_WINDOW_S = 1.0
SETTLE_S = 3.0  # a phase of the capacity scenarios is judged from this long after its change
RECOVERY_SHARE = 0.9
NOT_RECOVERED = "never"


@dataclass(frozen=True)
class ClassResult:
    """A class whose Locust run finished: its files and, in the outage or capacity scenario, when the
    outage or the capacity change was (start, end) in unix seconds."""

    client: str
    files: ClassFiles
    outage: tuple[float, float] | None = None
    capacity_change: tuple[float, float] | None = None


@dataclass(frozen=True)
class Summary:
    """The summary.csv row of one class, plus the counts the narrative needs."""

    client: str
    scenario: str
    capacity_rps: float
    offered_rps: float
    slo_ms: float | None
    slo_goodput_rps: float
    slo_attainment: float | None
    goodput_rps: float
    launched: int
    ok: int
    server_errors: int
    server_error_kinds: str
    shed: int
    shed_kinds: str
    unfinished: int
    skipped: int
    deferred: int | None
    replayed: int | None
    expired: int | None
    kept: int | None
    lost: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    max_ms: float | None
    max_client_concurrent: int | None
    server_max_lag_ms: float | None
    server_p95_lag_ms: float | None
    server_max_sockets: int | None
    server_max_in_flight: int | None
    recovery_s: float | str | None
    amplification: float | None = None
    outage_amplification: float | None = None
    reduced_capacity_rps: float | None = None
    goodput_reduced_rps: float | None = None
    goodput_restored_rps: float | None = None
    wire_attempts: int = 0
    elapsed_s: float = 0.0
    slo_ok: int = 0
    workers: int = 1
    wasted_work_ratio: float | None = None
    pre_trigger_slo_goodput_rps: float | None = None
    post_trigger_slo_goodput_rps: float | None = None
    recovered: str | None = None
    peak_share: float | None = None
    verdict: str | None = None
    jain_index: float | None = None
    lost_with_worker: int = 0
    lost_workers: str = ""
    extra: tuple[tuple[str, object], ...] = ()  # a scenario's own columns, after COLUMNS (its `columns`)
    by_criticality: tuple[tuple[str, object], ...] = ()  # --criticality-mix: before `extra`

    @property
    def columns(self) -> tuple[str, ...]:
        """This row's summary.csv columns: the shared ones, the criticality split, its scenario's own."""
        return COLUMNS + tuple(name for name, _ in (*self.by_criticality, *self.extra))

    def value(self, name: str) -> object:
        """The value of column `name`, shared, of the criticality split, or the scenario's own."""
        if name in COLUMNS:
            return getattr(self, name)
        return dict((*self.by_criticality, *self.extra)).get(name)

    @property
    def accounted(self) -> bool:
        """launched = ok + server_errors + shed + unfinished + lost_with_worker: none dropped or doubled."""
        ended = self.ok + self.server_errors + self.shed + self.unfinished
        return self.launched == ended + self.lost_with_worker

    @property
    def late(self) -> int:
        """Answered without error, but not 2xx within the SLO."""
        return self.ok - self.slo_ok

    @property
    def generator_behind(self) -> bool:
        """The load generator skipped more than 1 % of the launches it intended."""
        return too_many_skipped(self.launched, self.skipped)

    def skipped_note(self) -> str | None:
        if not self.generator_behind:
            return None
        intended = self.launched + self.skipped
        return (
            f"{self.client}: the load generator could not keep the rate: it skipped {self.skipped:,} of "
            f"{intended:,} launch slots ({skip_share(self.launched, self.skipped):.1%}); these numbers "
            "understate latency."
        )

    def cells(self) -> dict[str, str]:
        """The row as summary.csv writes it: empty cells for numbers that do not apply."""
        return {name: cell(name, self.value(name)) for name in self.columns}

    @property
    def failed_share(self) -> float:
        return self.server_errors / self.launched if self.launched else 0.0

    @property
    def shed_share(self) -> float:
        return self.shed / self.launched if self.launched else 0.0


def summarise(result: ClassResult, plan: LoadPlan) -> Summary:
    """Work out one class's row from its files (see the module doc for each number's source)."""
    stats = read_stats(result.files.stats)
    wire = [row for row in stats if row.is_wire]
    server = read_server(result.files.server)
    client = read_client(result.files.mitigations, result.client)
    lags = [row.lag_ms for row in server if row.lag_ms is not None]
    last = max(client, key=lambda row: row.timestamp, default=None)
    if last is None:
        last = ClientRow(0.0, 0.0, 0, 0, 0, 0, 0, 0)  # no samples at all: every count is 0
    window = plan.duration_s
    aggregate = next((row for row in stats if row.is_aggregate), None)
    elapsed = aggregate.count / aggregate.rps if aggregate and aggregate.rps > 0 else window
    instances = read_instances(result.files.mitigations, result.client)
    workers = max(1, len(instances))
    if workers > 1 and last.elapsed_s > 0:  # Locust's mixes the clocks of hosts (distributed.md#clocks)
        elapsed = last.elapsed_s
    launched = last.launched_total
    intended = launched + last.skipped_total
    seconds = max(elapsed, window)  # one duration for both goodputs (see the module doc)
    own_slo_ok = [
        max(rows, key=lambda row: row.timestamp).slo_ok_total for rows in instances.values() if rows
    ]

    return Summary(
        client=result.client,
        scenario=plan.scenario,
        capacity_rps=float(plan.capacity_rps),
        offered_rps=float(plan.offered_rps),
        slo_ms=last.slo_ms,
        slo_goodput_rps=last.slo_ok_total / seconds,
        slo_attainment=last.slo_ok_total / intended if intended else None,
        goodput_rps=last.ok_total / seconds,
        launched=launched,
        ok=last.ok_total,
        server_errors=last.server_errors_total,
        server_error_kinds=sort_counts(last.server_error_kinds),
        shed=last.shed_total,
        shed_kinds=sort_counts(last.shed_by_cause),
        unfinished=last.unfinished_total,
        skipped=last.skipped_total,
        deferred=last.deferred_total,
        replayed=last.replayed_total,
        expired=last.expired_total,
        kept=last.kept_total if last.deferred_total is not None else None,
        lost=lost_calls(launched, last.ok_total, last.kept_total),
        p50_ms=last.p50_ms,
        p95_ms=last.p95_ms,
        p99_ms=last.p99_ms,
        p999_ms=last.p999_ms,
        max_ms=last.max_ms,
        max_client_concurrent=max((row.max_concurrent for row in client), default=None),
        server_max_lag_ms=_highest(lags, (row.peak_lag_ms for row in server)),
        server_p95_lag_ms=percentile(lags, 0.95),
        server_max_sockets=_highest((row.sockets for row in server), (row.peak_sockets for row in server)),
        server_max_in_flight=_highest(
            (row.in_flight for row in server), (row.peak_in_flight for row in server)
        ),  # both None when nothing was mapped onto them (--server-metrics)
        recovery_s=None,
        amplification=last.wire_total / launched if launched else None,
        reduced_capacity_rps=plan.reduced_capacity_rps,
        wire_attempts=sum(row.count for row in wire),
        elapsed_s=seconds,
        slo_ok=last.slo_ok_total,
        workers=workers,
        jain_index=jain(own_slo_ok) if len(own_slo_ok) > 1 else None,
        wasted_work_ratio=wasted_ratio(server),
        by_criticality=criticality_cells(last, seconds),
        lost_with_worker=last.lost_with_worker,
        lost_workers=lost_workers.cell(lost_workers.lost_workers(instances)),
    )


def lost_calls(launched: int, ok: int, kept: int | None) -> int:
    """Neither served nor kept on disk for a later run: launched - ok - kept. Expired deferrals, server
    errors, sheds and unfinished calls nobody kept are all in it; `kept` is None without a `Defer`."""
    return launched - ok - (kept or 0)


def wasted_ratio(server: Sequence[ServerRow]) -> float | None:
    """Wasted / all CPU of the target's CPU-bound work, from its totals at the last sample: the embedded
    target starts fresh for every class and a --host target is reset, so they cover the class's run."""
    reported = [row for row in server if row.work_cpu_ms_total is not None]
    if not reported:
        return None
    last = max(reported, key=lambda row: row.timestamp)
    work, wasted = last.work_cpu_ms_total or 0.0, last.wasted_cpu_ms_total or 0.0
    return min(1.0, wasted / work) if work > 0 else None


def _highest(samples: Iterable[float | None], peaks: Iterable[float | None]) -> float | None:
    """The highest of the samples and of the server's own peaks (None where it reported none)."""
    values = [value for value in (*samples, *peaks) if value is not None]
    return max(values, default=None)


def write_csv(summaries: Sequence[Summary], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        columns = tuple(dict.fromkeys(name for s in summaries for name in s.columns)) or COLUMNS
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(summary.cells() for summary in summaries)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
