"""The summary as text: a Markdown table for summary.md, and a narrower table for the terminal."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from comparison.summary import COLUMNS, Summary

# The terminal table leaves out the scenario and the capacity (one value per run, printed above it)
# and the kinds columns, which can be long; summary.md and summary.csv have every column. A column that
# only some scenarios fill (OPTIONAL) is left out when it is empty in every row.
TERMINAL_COLUMNS = (
    ("client", "client"),
    ("offered_rps", "offered/s"),
    ("slo_goodput_rps", "SLO goodput/s"),
    ("slo_attainment", "in SLO"),
    ("goodput_rps", "ok/s any latency"),
    ("launched", "launched"),
    ("ok", "ok"),
    ("server_errors", "errors"),
    ("shed", "shed"),
    ("unfinished", "unfinished"),
    ("lost", "lost"),
    ("deferred", "deferred"),
    ("replayed", "replayed"),
    ("expired", "expired"),
    ("skipped", "skipped"),
    ("p50_ms", "p50 ms"),
    ("p95_ms", "p95 ms"),
    ("p99_ms", "p99 ms"),
    ("p999_ms", "p99.9 ms"),
    ("max_client_concurrent", "client conc"),
    ("server_max_lag_ms", "max lag ms"),
    ("server_p95_lag_ms", "p95 lag ms"),
    ("server_max_sockets", "sockets"),
    ("server_max_in_flight", "in flight"),
    ("recovery_s", "recovery s"),
    ("amplification", "amplif."),
    ("outage_amplification", "outage amplif."),
    ("reduced_capacity_rps", "C' /s"),
    ("goodput_reduced_rps", "goodput at C'"),
    ("goodput_restored_rps", "goodput after"),
)
OPTIONAL = {"deferred", "replayed", "expired",
            "recovery_s", "outage_amplification", "reduced_capacity_rps", "goodput_reduced_rps",
            "goodput_restored_rps"}  # fmt: skip


def markdown_table(summaries: Sequence[Summary]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join(" --- " for _ in COLUMNS) + "|"]
    for summary in summaries:
        cells = summary.cells()
        if summary.generator_behind:  # the notes below the table say why
            cells["client"] += " (load generator behind: latency understated)"
        lines.append("| " + " | ".join(cells[name].replace("|", "/") or " " for name in COLUMNS) + " |")
    return "\n".join(lines)


def terminal_table(summaries: Sequence[Summary]) -> str:
    cells = [summary.cells() for summary in summaries]
    shown = [
        (name, title)
        for name, title in TERMINAL_COLUMNS
        if name not in OPTIONAL or any(row[name] for row in cells)
    ]
    header = [title for _, title in shown]
    rows = [[row[name] or "-" for name, _ in shown] for row in cells]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest])

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(row) for row in rows)])


def write_markdown(
    path: Path,
    title: str,
    intro: str,
    summaries: Sequence[Summary],
    sentences: Sequence[str],
    notes: Sequence[str],
) -> None:
    parts = [f"# {title}", "", intro, "", markdown_table(summaries), "", " ".join(sentences), ""]
    if notes:
        parts += ["Notes:", "", *(f"- {note}" for note in notes), ""]
    path.write_text("\n".join(parts), encoding="utf-8")
