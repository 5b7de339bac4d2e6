"""The criticality split of a run with `--criticality-mix` (docs/criticality.md): its summary.csv
columns, and a table of them in summary.md and report.html.

For X = critical and sheddable: X_slo_goodput_rps (X calls answered 2xx within slo_ms of their launch,
over the run's seconds, the same as slo_goodput_rps), X_slo_attainment (that count over the X calls
launched) and X_p99_ms (the X calls' own HdrHistogram). Read from the class's last `all` row of
PREFIX_mitigations.csv, where the ledger's per-criticality parts are written. Nothing without a mix.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Protocol

from comparison.readers import ClientRow
from mitigations.criticality import CRITICALITIES

STATS = (("slo_goodput_rps", "SLO goodput/s"), ("slo_attainment", "in SLO"), ("p99_ms", "p99 ms"))


class Summarised(Protocol):
    """What the tables read of a `comparison.summary.Summary`."""

    client: str

    def cells(self) -> dict[str, str]: ...


def criticality_cells(last: ClientRow, seconds: float) -> tuple[tuple[str, object], ...]:
    """The split's summary columns (module doc); none without a mix."""
    cells: list[tuple[str, object]] = []
    for label in CRITICALITIES:
        launched = getattr(last, f"{label}_launched_total")
        if launched is None:
            return ()
        slo_ok = getattr(last, f"{label}_slo_ok_total") or 0
        cells += [
            (f"{label}_slo_goodput_rps", slo_ok / seconds if seconds > 0 else None),
            (f"{label}_slo_attainment", slo_ok / launched if launched else None),
            (f"{label}_p99_ms", getattr(last, f"{label}_p99_ms")),
        ]
    return tuple(cells)


def _table(summaries: Sequence[Summarised]) -> tuple[list[str], list[list[str]]]:
    """The header and rows: client, then each stat for each criticality; no rows without a split."""
    head = ["client", *(f"{label} {title}" for label in CRITICALITIES for _, title in STATS)]
    rows = []
    for summary in summaries:
        cells = summary.cells()
        names = [f"{label}_{stat}" for label in CRITICALITIES for stat, _ in STATS]
        if names[0] in cells:
            rows.append([summary.client, *(cells[name] or "-" for name in names)])
    return head, rows


def markdown(summaries: Sequence[Summarised]) -> str:
    head, rows = _table(summaries)
    if not rows:
        return ""
    lines = ["## By criticality", "", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join([*lines, ""])


def html_section(summaries: Sequence[Summarised]) -> str:
    head, rows = _table(summaries)
    if not rows:
        return ""
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return (
        "<h2>By criticality</h2>\n"
        '<div class="wide"><table id="criticality"><thead><tr>'
        + "".join(f"<th>{html.escape(h)}</th>" for h in head)
        + f"</tr></thead><tbody>{body}</tbody></table></div>"
    )
