"""`--baseline results/<run>`: a previous run's curves and numbers beside this run's in report.html.

A change to a mitigation shows as two curves per class: this run solid, the baseline dashed in the same
colour, on the same elapsed-seconds axis, with a table of the verdict columns then and now. Only the
baseline's files are read (its run.json, summary.csv and each class's CSVs); nothing is re-run.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from comparison.inputs import FileProblem, read_run_record, read_small_file
from comparison.readers import ClassFiles

if TYPE_CHECKING:  # matplotlib loads only once there is a report to draw, not to check the option
    from comparison.charts import Series
    from comparison.plan import LoadPlan
    from comparison.summary import Summary

COMPARED = (("slo_goodput_rps", "SLO goodput/s"), ("p99_ms", "p99 ms"), ("server_errors", "server errors"))


@dataclass(frozen=True)
class Baseline:
    folder: Path
    series: list[Series]
    rows: dict[str, dict[str, str]]  # client -> its summary.csv row


class BaselineError(ValueError):
    """A baseline folder that cannot be read; one line."""


def read_folder(folder: Path) -> tuple[list[str], dict[str, dict[str, str]]]:
    """The baseline's classes (run.json) and summary rows (summary.csv, when there), checked: both are
    regular files of bounded size, run.json is an object whose `clients` is a list of names, summary.csv
    has a `client` column and fields of at most 128 KiB. Raises BaselineError (one line)."""
    try:
        record = read_run_record(folder)
    except FileProblem as problem:
        raise BaselineError(str(problem)) from None
    clients = record.get("clients", [])
    if not isinstance(clients, list) or not all(isinstance(c, str) and c.isidentifier() for c in clients):
        raise BaselineError(f"{folder / 'run.json'}: clients is not a list of class names")
    summary = folder / "summary.csv"
    if not summary.exists():
        return clients, {}
    try:
        text = read_small_file(summary).decode("utf-8")
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows = list(reader)
    except FileProblem as problem:
        raise BaselineError(str(problem)) from None
    except (csv.Error, UnicodeDecodeError) as error:  # a field over 128 KiB, a NUL, not UTF-8
        raise BaselineError(f"{summary} is not a summary CSV ({str(error)[:80]})") from None
    if "client" not in (reader.fieldnames or ()):
        raise BaselineError(f"{summary} has no client column (not a Hammerlab summary.csv)")
    return clients, {
        row["client"]: {k: v for k, v in row.items() if isinstance(k, str) and isinstance(v, str)}
        for row in rows
        if isinstance(row.get("client"), str)
    }


def baseline_problem(folder: Path) -> str | None:
    """Why `folder` cannot be a baseline, or None; checked before the run starts."""
    try:
        read_folder(folder)
    except BaselineError as error:
        return str(error)
    return None


def load(folder: Path) -> Baseline:
    """The baseline run's series and summary rows, for the classes whose files are there. Raises
    BaselineError when a file changed since the start and cannot be read."""
    from comparison.charts import series_for
    from comparison.summary import ClassResult

    clients, rows = read_folder(folder)
    series = []
    for client in clients:
        files = ClassFiles(folder / client)
        if files.mitigations.exists():
            try:
                series.append(series_for(ClassResult(client, files)))
            except (OSError, ValueError, KeyError, TypeError, csv.Error) as error:
                raise BaselineError(f"{files.mitigations} cannot be read ({type(error).__name__})") from None
    return Baseline(folder, series, rows)


def unreadable_section(folder: Path, problem: str) -> str:
    """report.html's baseline section when the baseline could not be read: the reason, not a traceback."""
    return (
        f'<h2 id="baseline">Against the baseline {html.escape(folder.name)}</h2>\n'
        f"<p>The baseline could not be read: {html.escape(problem)}</p>\n"
    )


def overlay_svg(plan: LoadPlan, current: Sequence[Series], baseline: Baseline) -> str:
    import matplotlib.pyplot as plt

    from comparison.charts import svg

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
