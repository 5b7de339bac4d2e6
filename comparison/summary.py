"""One summary row per client class, worked out from that class's files only.

Where each number comes from (one source each):
  - the accounting and latency columns (launched, ok, server_errors and their kinds, shed and its
    causes, unfinished, skipped, slo_ms, slo_goodput_rps, slo_attainment, goodput_rps, p50..max_ms):
    the class's last `worker=all` row of PREFIX_mitigations.csv, written after the test's drain, i.e.
    the plugin's ledger (`locust_plugin.ledger`). Logical calls, each counted once by its final outcome,
    so launched = ok + server_errors + shed + unfinished on every row. The percentiles come from an
    HdrHistogram of answered calls (ok or failed) from their scheduled launch, 3 significant digits.
    slo_goodput_rps = 2xx answers within slo_ms / the run's duration; goodput_rps = every ok answer,
    however late, / the same duration. That duration is the whole run, drain included (Locust's elapsed
    time: its Aggregated count / Requests/s, and never less than --duration), so a backlog answered after
    the launch window cannot push goodput past what the server really served, and SLO goodput (a subset
    of the ok answers over the same seconds) can never exceed goodput. slo_attainment = the same count /
    the intended calls (launched + skipped: a slot the generator skipped was a call a user wanted).
    deferred, replayed, expired, kept (DeferredClient; empty for a class without `Defer`): calls kept
    on disk, replayed, expired unsent, and still on disk at the end (part of unfinished). lost =
    launched - ok - kept: neither served nor kept for a later run, i.e. every server error, every shed
    (expired deferrals included) and every unfinished call nobody kept.
  - max_client_concurrent: PREFIX_mitigations.csv, the class's `all` rows.
  - server lag, sockets and in-flight: PREFIX_server.csv. The maxima take the server's own peaks
    (peak_lag_ms, peak_in_flight, peak_sockets, since it started: the embedded target is restarted for
    every class, a --host target reset) as well as the samples, because a melting server answers /stats
    late and its worst moments fall between samples. The p95 is over the samples.
  - recovery_s (outage only): PREFIX_mitigations.csv; the start of the first 1 s window after the
    outage's end in which the client's goodput is at least 90 % of the offered rate.

Appended after recovery_s, for the issue on adaptive limits and safe retries (the columns before them
keep their order):
  - amplification: attempts on the wire (retries and replays included; PREFIX_mitigations.csv's
    wire_total) per launched logical request (the ledger's launched). 1.00: every request sent once;
    below 1: some were shed or never sent; above: retries.
  - outage_amplification (outage only): the same ratio inside the outage window, from the two sides'
    counters: the server's requests_total (PREFIX_server.csv) over the client's launched_total
    (PREFIX_mitigations.csv), each interpolated at the window's start and end.
  - reduced_capacity_rps, goodput_reduced_rps, goodput_restored_rps (capacity only): C measured while
    sync_work_ms was doubled, and the client's goodput (PREFIX_mitigations.csv) while it was, and after
    it reverted, each from SETTLE_S after the change to the end of its phase.
  - wasted_work_ratio: the target's CPU spent for clients that had already given up (deadline passed
    when the work finished, or connection closed) over all its /doWork CPU, between the first and the
    last sample of PREFIX_server.csv (empty for a target that does not report it).
  - pre_trigger_slo_goodput_rps, post_trigger_slo_goodput_rps, recovered, peak_share, verdict
    (metastable only; recovery_s too): comparison/metastable.py.
  - workers: the client instances the class ran as, i.e. the processes with rows of their own in
    PREFIX_mitigations.csv (1 for a single process; N with `--workers N`, each a Locust worker whose
    numbers the master summed into the `all` rows the columns above are read from).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from comparison.config import SETTLE_S, LoadPlan
from comparison.readers import (
    ClassFiles,
    ClientRow,
    ServerRow,
    read_client,
    read_instances,
    read_server,
    read_stats,
)

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
)
# As `locust_plugin.ledger.SKIP_WARN_SHARE`; not imported, because importing the plugin loads Locust.
SKIP_WARN_SHARE = 0.01
RECOVERY_WINDOW_S = 1.0
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

    @property
    def accounted(self) -> bool:
        """launched = ok + server_errors + shed + unfinished: nothing dropped, nothing counted twice."""
        return self.launched == self.ok + self.server_errors + self.shed + self.unfinished

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
        return {name: _cell(name, getattr(self, name)) for name in COLUMNS}

    @property
    def failed_share(self) -> float:
        return self.server_errors / self.launched if self.launched else 0.0

    @property
    def shed_share(self) -> float:
        return self.shed / self.launched if self.launched else 0.0


_DECIMALS = {
    "capacity_rps": 1,
    "offered_rps": 1,
    "slo_goodput_rps": 1,
    "slo_attainment": 3,
    "goodput_rps": 1,
    "server_max_lag_ms": 1,
    "server_p95_lag_ms": 1,
    "recovery_s": 2,
    "amplification": 2,
    "outage_amplification": 2,
    "reduced_capacity_rps": 1,
    "goodput_reduced_rps": 1,
    "goodput_restored_rps": 1,
    "wasted_work_ratio": 3,
    "pre_trigger_slo_goodput_rps": 1,
    "post_trigger_slo_goodput_rps": 1,
    "peak_share": 2,
}


_LATENCY_COLUMNS = frozenset({"p50_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms"})


def three_digits(ms: float) -> str:
    """A latency with the three significant digits its histogram keeps: 0.412, 41.2, 412, 4120."""
    if ms >= 100:
        return f"{ms:.0f}"
    return f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}" if ms >= 1 else f"{ms:.3f}"


def _cell(name: str, value: object) -> str:
    if value is None:
        return ""
    if name in _LATENCY_COLUMNS and isinstance(value, float):
        return three_digits(value)
    if name == "slo_ms" and isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, float):
        decimals = _DECIMALS.get(name, 0)
        return f"{value:.{decimals}f}"
    return str(value)


def join_counts(counts: dict[str, int]) -> str:
    """`connect-timeout=12;503=3`, largest first: the same `key=count;...` form as the sampler's."""
    return ";".join(f"{key}={value}" for key, value in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def percentile(values: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile (share in (0, 1]); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def recovery_time(
    rows: Sequence[ClientRow], outage_end: float, offered_rps: float, window_s: float = RECOVERY_WINDOW_S
) -> float | None:
    """Seconds from `outage_end` to the start of the first `window_s` window, wholly after it, in which
    goodput reached RECOVERY_SHARE x `offered_rps`. None when that never happened before the run ended."""
    target = RECOVERY_SHARE * offered_rps
    ordered = sorted(rows, key=lambda r: r.timestamp)
    start = 0
    for end, row in enumerate(ordered):
        # the window starts at the latest sample at least window_s before `row`, and after the outage
        while start + 1 < end and ordered[start + 1].timestamp <= row.timestamp - window_s:
            start += 1
        first = ordered[start]
        if first.timestamp < outage_end or row.timestamp - first.timestamp < window_s * 0.99:
            continue
        rate = (row.good_total - first.good_total) / (row.timestamp - first.timestamp)
        if rate >= target:
            return first.timestamp - outage_end
    return None


def value_at(points: Sequence[tuple[float, float]], t: float) -> float | None:
    """A sampled cumulative counter at time `t`, interpolated linearly between the samples around it.
    None when `t` lies outside the samples (the counter was not watched then)."""
    ordered = sorted(points)
    for (t0, v0), (t1, v1) in pairwise(ordered):
        if t0 <= t <= t1:
            return v0 if t1 == t0 else v0 + (v1 - v0) * (t - t0) / (t1 - t0)
    if ordered and ordered[-1][0] == t:
        return ordered[-1][1]
    return None


def rate_between(points: Sequence[tuple[float, float]], start: float, end: float) -> float | None:
    """How fast a sampled cumulative counter grew between `start` and `end`, per second."""
    first, last = value_at(points, start), value_at(points, end)
    if first is None or last is None or end <= start:
        return None
    return (last - first) / (end - start)


def window_amplification(
    server: Sequence[ServerRow], client: Sequence[ClientRow], window: tuple[float, float]
) -> float | None:
    """Requests the server received / requests the client launched, inside `window` (unix seconds)."""
    start, end = window
    received = rate_between(
        [(row.timestamp, row.requests_total) for row in server if row.requests_total is not None], start, end
    )
    launched = rate_between([(row.timestamp, row.launched_total) for row in client], start, end)
    if received is None or not launched:
        return None
    return received / launched


def phase_goodput(
    client: Sequence[ClientRow], change: tuple[float, float], settle_s: float = SETTLE_S
) -> tuple[float | None, float | None]:
    """Goodput while the capacity was changed and after it reverted, each from `settle_s` after the
    change to the end of its phase (the run's last sample for the second)."""
    points = [(row.timestamp, row.good_total) for row in client]
    last = max((t for t, _ in points), default=change[1])
    return (
        rate_between(points, change[0] + settle_s, change[1]),
        rate_between(points, change[1] + settle_s, last),
    )


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
    recovery: float | str | None = None
    outage_amplification = None
    if result.outage is not None:
        found = recovery_time(client, result.outage[1], plan.offered_rps)
        recovery = NOT_RECOVERED if found is None else max(0.0, found)
        outage_amplification = window_amplification(server, client, result.outage)
    reduced = restored = None
    if result.capacity_change is not None:
        reduced, restored = phase_goodput(client, result.capacity_change)
    window = plan.duration_s
    aggregate = next((row for row in stats if row.is_aggregate), None)
    elapsed = aggregate.count / aggregate.rps if aggregate and aggregate.rps > 0 else window
    launched = last.launched_total
    intended = launched + last.skipped_total
    seconds = max(elapsed, window)  # one duration for both goodputs (see the module doc)

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
        recovery_s=recovery,
        amplification=last.wire_total / launched if launched else None,
        outage_amplification=outage_amplification,
        reduced_capacity_rps=plan.reduced_capacity_rps,
        goodput_reduced_rps=None if reduced is None else max(0.0, reduced),
        goodput_restored_rps=None if restored is None else max(0.0, restored),
        wire_attempts=sum(row.count for row in wire),
        elapsed_s=seconds,
        slo_ok=last.slo_ok_total,
        workers=max(1, len(read_instances(result.files.mitigations, result.client))),
        wasted_work_ratio=wasted_ratio(server),
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


def skip_share(launched: int, skipped: int) -> float:
    """Skipped slots as a share of intended launches (launched + skipped)."""
    intended = launched + skipped
    return skipped / intended if intended else 0.0


def too_many_skipped(launched: int, skipped: int) -> bool:
    return skip_share(launched, skipped) > SKIP_WARN_SHARE


def sort_counts(joined: str) -> str:
    """`a=1;b=3` (the sampler's sorted-by-name form) -> `b=3;a=1`, largest first."""
    counts: dict[str, int] = {}
    for part in filter(None, joined.split(";")):
        key, _, value = part.rpartition("=")
        counts[key] = counts.get(key, 0) + int(value)
    return join_counts(counts)


def _highest(samples: Iterable[float | None], peaks: Iterable[float | None]) -> float | None:
    """The highest of the samples and of the server's own peaks (None where it reported none)."""
    values = [value for value in (*samples, *peaks) if value is not None]
    return max(values, default=None)


def write_csv(summaries: Sequence[Summary], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(summary.cells() for summary in summaries)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
