"""`--baseline results/<run>`: a previous run's curves and numbers beside this run's in report.html.

A change to a mitigation shows as two curves per class: this run solid, the baseline dashed in the same
colour, on the same elapsed-seconds axis, with a table of the verdict columns then and now. Only the
baseline's files are read (its run.json, summary.csv and each class's CSVs); nothing is re-run.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt

from comparison.charts import Series, series_for, svg
from comparison.plan import LoadPlan
from comparison.readers import ClassFiles
from comparison.summary import ClassResult, Summary, read_csv

COMPARED = (("slo_goodput_rps", "SLO goodput/s"), ("p99_ms", "p99 ms"), ("server_errors", "server errors"))


@dataclass(frozen=True)
class Baseline:
    folder: Path
    series: list[Series]
    rows: dict[str, dict[str, str]]  # client -> its summary.csv row


def load(folder: Path) -> Baseline:
    """The baseline run's series and summary rows, for the classes whose files are there."""
    record = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    series = []
    for client in record.get("clients", []):
        files = ClassFiles(folder / client)
        if files.mitigations.exists():
            series.append(series_for(ClassResult(client, files)))
    summary = folder / "summary.csv"
    rows = {row["client"]: row for row in read_csv(summary)} if summary.exists() else {}
    return Baseline(folder, series, rows)


def overlay_svg(plan: LoadPlan, current: Sequence[Series], baseline: Baseline) -> str:
    figure, axes = plt.subplots(1, 1, figsize=(11, 3.6))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    clients = list(dict.fromkeys([s.client for s in current] + [s.client for s in baseline.series]))
    for index, client in enumerate(clients):
        colour = colours[index % len(colours)]
        for series in current:
            if series.client == client:
                axes.plot(series.t, series.slo_goodput, color=colour, lw=1.5, label=f"{client} (this run)")
        for series in baseline.series:
            if series.client == client:
                axes.plot(
                    series.t, series.slo_goodput, color=colour, lw=1.2, ls="--", label=f"{client} (baseline)"
                )
    axes.set_title(f"SLO goodput: this run (solid) against the baseline {baseline.folder.name} (dashed)")
    axes.set_ylabel("2xx within SLO /s")
    axes.set_xlabel("seconds since the class's test started")
    axes.set_xlim(0, plan.duration_s)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize=8, ncol=2)
    figure.tight_layout()
    return svg(figure, "baseline")


def section(
    plan: LoadPlan, current: Sequence[Series], summaries: Sequence[Summary], baseline: Baseline
) -> str:
    """report.html's baseline section: the overlay and the verdict columns, baseline -> this run."""
    head = "".join(f"<th>{html.escape(title)}: baseline</th><th>this run</th>" for _, title in COMPARED)
    body = []
    for summary in summaries:
        then = baseline.rows.get(summary.client, {})
        now = summary.cells()
        cells = "".join(
            f"<td>{html.escape(then.get(name, '') or '-')}</td><td>{html.escape(now[name] or '-')}</td>"
            for name, _ in COMPARED
        )
        body.append(f"<tr><td>{html.escape(summary.client)}</td>{cells}</tr>")
    return (
        f'<h2 id="baseline">Against the baseline {html.escape(baseline.folder.name)}</h2>\n'
        f'<div class="chart" id="baseline-overlay">{overlay_svg(plan, current, baseline)}</div>\n'
        f'<table id="baseline-table"><thead><tr><th>client</th>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>\n"
    )
