"""Fleets: one client class as N instances (Locust workers) against one target, judged as a whole.

A per-instance limit that was right for one process is N times too much once N instances add up; an
adaptive limit has to find its fair share with no coordination. So for every class of a run with
`--workers` > 1 this module reads each instance's own final numbers (its rows in PREFIX_mitigations.csv)
and reports:

  - each instance's SLO goodput (2xx within slo_ms of the scheduled launch, per second of --duration)
    and its share of the class's total;
  - Jain's fairness index over those goodputs, (sum x)^2 / (n * sum x^2): 1 when every instance gets
    the same, 1/n when one gets everything (Jain, Chiu and Hawe, DEC-TR-301, 1984);
  - each instance's limit over time and their sum (the adaptive limit; for a class without one, the
    calls it had in flight), for the chart in report.html.

In the fleet scenario (2 x C split over the instances) three targets are checked, from the issue:
total SLO goodput >= 0.9 x C, Jain >= 0.9, and server lag p95 <= 2 x the shedding threshold (the
target's max_lag_ms, 70 ms, toobusy's default).
"""

from __future__ import annotations

import csv
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from comparison.counters import jain
from comparison.plan import LoadPlan
from comparison.readers import ClientRow, read_client, read_instances
from comparison.summary import ClassResult, Summary

SHEDDING_THRESHOLD_MS = 70.0  # the target's --max-lag-ms default (toobusy's maxLag)
GOODPUT_SHARE = 0.9
JAIN_MIN = 0.9
LAG_FACTOR = 2.0
CSV_COLUMNS = (
    "client", "instance", "worker", "launched", "ok", "server_errors", "shed", "unfinished", "slo_ok",
    "slo_goodput_rps", "share", "median_limit", "host",
)  # fmt: skip
_WORKER_ID = re.compile(r"(.+)_[0-9a-f]{32}")


def worker_host(worker: str) -> str:
    """The host of a Locust worker id: Locust names a worker `<hostname>_<32 hex digits>` (runners.py),
    so a fleet over several machines says which machine each instance ran on; another id as it is."""
    found = _WORKER_ID.fullmatch(worker)
    return found[1] if found else worker


@dataclass(frozen=True)
class Instance:
    """One client instance (a Locust worker) of a class: its own final numbers."""

    name: str  # instance 1..N, by worker id
    worker: str
    launched: int
    ok: int
    server_errors: int
    shed: int
    unfinished: int
    slo_ok: int
    slo_goodput_rps: float
    share: float | None
    median_limit: float | None
    t: tuple[float, ...]  # elapsed seconds of its samples
    limit: tuple[float, ...]  # its limit at each (or its calls in flight, without an adaptive limit)

    @property
    def host(self) -> str:
        return worker_host(self.worker)


@dataclass(frozen=True)
class Target:
    name: str
    measured: str
    required: str
    met: bool

    @property
    def verdict(self) -> str:
        return "PASS" if self.met else "MISS"


@dataclass(frozen=True)
class Fleet:
    client: str
    instances: tuple[Instance, ...]
    jain: float | None
    slo_goodput_rps: float
    capacity_rps: float
    server_p95_lag_ms: float | None
    has_limit: bool  # an adaptive limit (else `limit` holds calls in flight)
    sum_t: tuple[float, ...]
    sum_limit: tuple[float, ...]

    def targets(self) -> list[Target]:
        lag_cap = LAG_FACTOR * SHEDDING_THRESHOLD_MS
        share = self.slo_goodput_rps / self.capacity_rps if self.capacity_rps else 0.0
        lag = self.server_p95_lag_ms
        return [
            Target(
                "total SLO goodput",
                f"{self.slo_goodput_rps:.1f}/s = {share:.2f} C",
                f">= {GOODPUT_SHARE:g} C = {GOODPUT_SHARE * self.capacity_rps:.1f}/s",
                share >= GOODPUT_SHARE,
            ),
            Target(
                "Jain's fairness index",
                "n/a" if self.jain is None else f"{self.jain:.3f}",
                f">= {JAIN_MIN:g}",
                self.jain is not None and self.jain >= JAIN_MIN,
            ),
            Target(
                "server lag p95",
                "n/a" if lag is None else f"{lag:.1f} ms",
                f"<= {LAG_FACTOR:g} x {SHEDDING_THRESHOLD_MS:g} ms = {lag_cap:g} ms",
                lag is not None and lag <= lag_cap,
            ),
        ]

    def line(self) -> str:
        """One line for the terminal."""
        parts = [f"{t.name} {t.measured} ({t.verdict})" for t in self.targets()]
        shares = ", ".join("n/a" if i.share is None else f"{i.share:.0%}" for i in self.instances)
        return f"fleet {self.client}: {'; '.join(parts)}; shares {shares}"


def _limit_of(row: ClientRow, has_limit: bool) -> float:
    return (row.limit or 0.0) if has_limit else float(row.concurrent)


def fleet_of(result: ClassResult, summary: Summary, plan: LoadPlan) -> Fleet:
    """The fleet view of one class from its files (see the module doc)."""
    per_worker = read_instances(result.files.mitigations, result.client)
    has_limit = any(row.limit is not None for rows in per_worker.values() for row in rows)
    finals = {worker: max(rows, key=lambda r: r.timestamp) for worker, rows in per_worker.items() if rows}
    # over the summary's duration, so the instances add up to the class's SLO goodput
    goodputs = {worker: row.slo_ok_total / summary.elapsed_s for worker, row in finals.items()}
    total = sum(goodputs.values())
    instances = []
    for index, worker in enumerate(sorted(finals), start=1):
        final, rows = finals[worker], sorted(per_worker[worker], key=lambda r: r.timestamp)
        limits = [_limit_of(row, has_limit) for row in rows]
        running = [value for row, value in zip(rows, limits, strict=True) if row.elapsed_s <= plan.duration_s]
        instances.append(
            Instance(
                name=f"instance {index}",
                worker=worker,
                launched=final.launched_total,
                ok=final.ok_total,
                server_errors=final.server_errors_total,
                shed=final.shed_total,
                unfinished=final.unfinished_total,
                slo_ok=final.slo_ok_total,
                slo_goodput_rps=goodputs[worker],
                share=goodputs[worker] / total if total else None,
                median_limit=statistics.median(running) if running else None,
                t=tuple(row.elapsed_s for row in rows),
                limit=tuple(limits),
            )
        )
    summed = sorted(read_client(result.files.mitigations, result.client), key=lambda r: r.timestamp)
    return Fleet(
        client=result.client,
        instances=tuple(instances),
        jain=jain(list(goodputs.values())),
        slo_goodput_rps=summary.slo_goodput_rps,
        capacity_rps=plan.capacity_rps,
        server_p95_lag_ms=summary.server_p95_lag_ms,
        has_limit=has_limit,
        sum_t=tuple(row.elapsed_s for row in summed),
        sum_limit=tuple(_limit_of(row, has_limit) for row in summed),
    )


def write_csv(fleets: Sequence[Fleet], path: Path) -> None:
    """fleet.csv: one row per instance of every class."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for fleet in fleets:
            for i in fleet.instances:
                writer.writerow([
                    fleet.client, i.name, i.worker, i.launched, i.ok, i.server_errors, i.shed, i.unfinished,
                    i.slo_ok, f"{i.slo_goodput_rps:.2f}", "" if i.share is None else f"{i.share:.3f}",
                    "" if i.median_limit is None else f"{i.median_limit:g}", i.host,
                ])  # fmt: skip


TARGET_HEAD = ("target", "measured", "required", "verdict")


def target_rows(fleet: Fleet) -> list[tuple[str, ...]]:
    """The fleet targets as table cells, for summary.md and report.html alike."""
    return [(t.name, t.measured, t.required, t.verdict) for t in fleet.targets()]


def instance_head(fleet: Fleet) -> tuple[str, ...]:
    limit = "median limit" if fleet.has_limit else "median in flight"
    return (
        "instance",
        "host",
        "launched",
        "ok",
        "server errors",
        "shed",
        "unfinished",
        "SLO goodput/s",
        "share",
        limit,
    )


def instance_rows(fleet: Fleet) -> list[tuple[str, ...]]:
    """Every instance's numbers as table cells: the one instance table, written as markdown and HTML."""
    rows = []
    for i in fleet.instances:
        share = "n/a" if i.share is None else f"{i.share:.1%}"
        median = "" if i.median_limit is None else f"{i.median_limit:g}"
        rows.append((i.name, i.host, str(i.launched), str(i.ok), str(i.server_errors), str(i.shed),
                     str(i.unfinished), f"{i.slo_goodput_rps:.1f}", share, median))  # fmt: skip
    return rows


def _markdown_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [
        "| " + " | ".join(head) + " |",
        "|" + " --- |" * len(head),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def markdown(fleets: Sequence[Fleet], judged: bool) -> str:
    """The fleet section of summary.md: targets (fleet scenario only) and every instance's numbers."""
    parts = ["## Fleet: every client instance", ""]
    for fleet in fleets:
        index = "n/a" if fleet.jain is None else f"{fleet.jain:.3f}"
        parts += [f"### {fleet.client} ({len(fleet.instances)} instances, Jain's index {index})", ""]
        if judged:
            parts += [*_markdown_table(TARGET_HEAD, target_rows(fleet)), ""]
        parts += [*_markdown_table(instance_head(fleet), instance_rows(fleet)), ""]
    return "\n".join(parts)


def write_outputs(
    run_dir: Path,
    plan: LoadPlan,
    results: Sequence[ClassResult],
    summaries: Sequence[Summary],
    judged: bool = False,
) -> tuple[list[str], list[Fleet], bool]:
    """fleet.csv and the fleet section appended to summary.md; returns the terminal lines, the fleets
        (for `fleet_report.fleet_section`) and whether the fleet targets were judged (`judged`: the scenario
    says so). Nothing for a run of one
        process per class."""
    if plan.workers <= 1:
        return [], [], False
    fleets = [fleet_of(result, summary, plan) for result, summary in zip(results, summaries, strict=True)]
    write_csv(fleets, run_dir / "fleet.csv")
    with (run_dir / "summary.md").open("a", encoding="utf-8") as handle:
        handle.write("\n" + markdown(fleets, judged))
    lines = [fleet.line() if judged else _shares_line(fleet) for fleet in fleets]
    return lines, fleets, judged


def _shares_line(fleet: Fleet) -> str:
    shares = ", ".join("n/a" if i.share is None else f"{i.share:.0%}" for i in fleet.instances)
    index = "n/a" if fleet.jain is None else f"{fleet.jain:.3f}"
    return f"fleet {fleet.client}: {len(fleet.instances)} instances, Jain's index {index}, shares {shares}"
