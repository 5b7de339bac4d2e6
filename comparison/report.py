"""report.html: one self-contained page with the table, the sentences and the charts.

Charts are drawn with matplotlib and embedded as inline SVG, so the page opens offline with no CDN and
no other file. Every chart shares one time axis (seconds since that class's test started), so the
classes line up and a reader sees at a glance which client kept the server healthy.

  - overview: goodput of every class on one axes, and the server's lag under every class;
  - per class, one row each: goodput, errors and shed stacked (with the offered rate as a line), the
    client's own concurrent count, the server's lag, and the server's open sockets. Each column shares
    its y axis across classes, so a flat line means "small", not "rescaled".
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from comparison.charts import COLOURS, STYLE, Series, offered_line, plt, series_for, shade_events, svg
from comparison.plan import LoadPlan
from comparison.scenarios import scenario_of
from comparison.summary import COLUMNS, ClassResult, Summary


def _shade(axes: Any, plan: LoadPlan, series: Series) -> None:
    shade_events(axes, series)
    scenario_of(plan.scenario).shade(axes, plan)


def overview_svg(plan: LoadPlan, all_series: Sequence[Series]) -> str:
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    x, offered = offered_line(plan)
    top.plot(x, offered, color=COLOURS["offered"], lw=1, ls="--", label="offered")
    for series in all_series:
        top.plot(series.t, series.slo_goodput, lw=1.4, label=series.client)
        bottom.plot(series.server_t, series.lag, lw=1.4, label=series.client)
    if all_series:
        _shade(top, plan, all_series[0])
        _shade(bottom, plan, all_series[0])
    top.set_ylabel("SLO goodput (2xx within SLO /s)")
    top.set_title(
        f"SLO goodput of every class: 2xx answered within {plan.slo_ms:g} ms of launch (dashed: offered load)"
    )
    bottom.set_ylabel("server lag (ms)")
    bottom.set_title("Server lag under every class")
    bottom.set_xlabel("seconds since the class's test started")
    bottom.set_xlim(0, plan.duration_s)
    top.legend(loc="upper left", fontsize=8, ncol=4)
    for axes in (top, bottom):
        axes.grid(alpha=0.3)
    figure.tight_layout()
    return svg(figure, "overview")


def grid_svg(plan: LoadPlan, all_series: Sequence[Series]) -> str:
    rows = len(all_series)
    figure, axes = plt.subplots(
        rows, 4, figsize=(15, 2.3 * rows + 0.8), sharex=True, sharey="col", squeeze=False
    )
    x, offered = offered_line(plan)
    titles = ("goodput / errors / shed per s", "client concurrent (dashed: deferred queue)",
              "server lag (ms)", "server sockets")  # fmt: skip
    for row, series in enumerate(all_series):
        rates, concurrent, lag, sockets = axes[row]
        rates.stackplot(
            series.t,
            series.goodput,
            series.errors,
            series.shed,
            colors=[COLOURS["goodput"], COLOURS["errors"], COLOURS["shed"]],
            labels=["goodput", "errors", "shed"],
            lw=0,
        )
        rates.plot(x, offered, color=COLOURS["offered"], lw=1, ls="--", label="offered")
        concurrent.plot(series.client_t, series.concurrent, color="#6a1b9a", lw=1.2)
        if series.deferred_queue is not None:  # rises in each peak, drains in each trough
            concurrent.plot(series.client_t, series.deferred_queue, color="#6a1b9a", lw=1.2, ls="--")
        lag.plot(series.server_t, series.lag, color="#e65100", lw=1.2)
        sockets.plot(series.server_t, series.sockets, color="#00695c", lw=1.2)
        for axes_one in axes[row]:
            _shade(axes_one, plan, series)
            axes_one.grid(alpha=0.3)
        rates.set_ylabel(series.client, fontsize=10, fontweight="bold")
        if row == 0:
            for axes_one, title in zip(axes[row], titles, strict=True):
                axes_one.set_title(title, fontsize=10)
            rates.legend(loc="upper left", fontsize=7, ncol=4)
    for axes_one in axes[-1]:
        axes_one.set_xlabel("seconds")
        axes_one.set_xlim(0, plan.duration_s)
    figure.tight_layout()
    return svg(figure, "grid")


def _table(summaries: Sequence[Summary]) -> str:
    columns = summaries[0].columns if summaries else COLUMNS
    head = "".join(f"<th>{html.escape(name)}</th>" for name in columns)
    body = []
    for summary in summaries:
        cells = summary.cells()
        body.append("<tr>" + "".join(f"<td>{html.escape(cells[name])}</td>" for name in columns) + "</tr>")
    return f'<table id="summary"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _files(results: Sequence[ClassResult]) -> str:
    items = []
    for result in results:
        links = " · ".join(
            f'<a href="{html.escape(path.name)}">{html.escape(path.name.removeprefix(result.client))}</a>'
            for path in [result.files.html, *result.files.locust_files()[:4], *result.files.sampler_files()]
            if path.exists()
        )
        items.append(f"<li><b>{html.escape(result.client)}</b>: {links}</li>")
    return "<ul>" + "".join(items) + "</ul>"


HOW_TO_READ = """
<ul>
<li><b>slo_goodput_rps</b>, the verdict: requests answered 2xx within <b>slo_ms</b> of their scheduled
launch, per second of the whole run (drain included). <b>slo_attainment</b>: the same count over every
intended request (launched + skipped). <b>goodput_rps</b>: every 2xx/3xx answer however late, per second of
the same run, so SLO goodput is never above it: a client can score high here by answering after its users
gave up, which is why it is not the verdict.</li>
<li>Every launched request ends in exactly one of <b>ok</b>, <b>server_errors</b> (failed on the wire, by
final kind in <b>server_error_kinds</b>), <b>shed</b> (held back in the client, by cause in
<b>shed_kinds</b>) and <b>unfinished</b> (still in flight when the drain after the run ran out):
launched = ok + server_errors + shed + unfinished. <b>lost</b> = launched - ok - <b>kept</b> (deferred
calls still on disk at the end): neither served nor kept, expired deferrals included.
<b>skipped</b>: launch slots the load generator missed (never launched); over 1 % of intended launches
flags the row, since latency is then understated.</li>
<li><b>p50/p95/p99/p999/max_ms</b>: latency of answered requests (ok or failed) from their scheduled
launch, so time queued inside the client is included, from an HdrHistogram (3 significant digits).</li>
<li><b>server_max_lag_ms / server_p95_lag_ms</b>: the target's event-loop lag (toobusy's measure; the seed's
healthy pair showed 49-63 ms). A lag in the hundreds of ms means the server is past its cliff.</li>
<li><b>server_max_sockets / server_max_in_flight</b>: connections open to the server, and requests
inside it.</li>
<li><b>recovery_s</b> (outage only): from the end of the outage to the start of the first 1 s in which
goodput was back to 90 % of the offered load; <i>never</i> if that did not happen before the run ended.</li>
<li><b>amplification</b>: requests on the wire (retries included) per logical request (first attempts plus
calls shed before their first attempt); 1.00 means no retries. <b>outage_amplification</b>: requests the
server received per request the client launched, inside the outage: a retry storm shows here.</li>
<li><b>reduced_capacity_rps</b>, <b>goodput_reduced_rps</b>, <b>goodput_restored_rps</b> (capacity only):
the capacity measured with sync_work_ms doubled, and the goodput while it was and after it reverted, each
from 3 s after the change.</li>
<li>Charts: red bands mark the outage, blue bands the reduced capacity, orange bands the burst peaks; the
dashed line is the offered load.</li>
</ul>
"""


def write_report(
    path: Path,
    title: str,
    plan: LoadPlan,
    results: Sequence[ClassResult],
    summaries: Sequence[Summary],
    sentences: Sequence[str],
    record: dict[str, Any],
    extra_sections: str = "",
) -> None:
    """`extra_sections`: HTML placed after the per-class charts (the fleet, mix and baseline views)."""
    all_series = [series_for(result) for result in results]
    machine = record.get("machine", {})
    capacity = record.get("capacity", {})
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in record.get("notes", []))
    meta = (
        f"Machine: {machine.get('cores')} cores, {html.escape(str(machine.get('cpu', '')))}, "
        f"{html.escape(str(machine.get('system', '')))}, Python {machine.get('python')}, "
        f"Locust {machine.get('locust')}. Target: {html.escape(str(record.get('target', '')))}. "
        f"Capacity C = {plan.capacity_rps:.1f} requests/s ({html.escape(str(capacity.get('source', '')))}). "
        f"Command: <code>{html.escape(str(record.get('command', '')))}</code>"
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{STYLE}</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="meta">{meta}</p>
<p id="narrative">{html.escape(" ".join(sentences))}</p>
{f'<ul class="meta">{notes}</ul>' if notes else ""}
<h2>Summary</h2>
<div class="wide">{_table(summaries)}</div>
<h2>All classes on one time axis</h2>
<div class="chart" id="overview">{overview_svg(plan, all_series)}</div>
<h2>Each class over time</h2>
<div class="chart" id="per-class">{grid_svg(plan, all_series)}</div>
{extra_sections}
<h2>How to read this</h2>
{HOW_TO_READ}
<h2>Files</h2>
{_files(results)}
</body></html>
"""
    path.write_text(page, encoding="utf-8")
