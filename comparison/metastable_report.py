"""The metastable section of report.html: each client across the three phases, the trigger as a band.

One row per client, four panels on one time axis: SLO goodput per second (with the pre-trigger level
and the 90 % recovery bar), retries per second (attempts on the wire beyond the launched calls), the
target's requests in flight, and its event-loop lag. A client that comes back shows goodput returning to
its bar soon after the band; a stuck one shows it flat near zero while retries and in-flight stay high.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from comparison.charts import svg
from comparison.metastable import RECOVERY_SHARE, RULE, MetastableOptions, windows
from comparison.plan import LoadPlan
from comparison.readers import read_client, read_server
from comparison.summary import ClassResult, Summary

BAND = "#ffcc80"
STEP_S = 0.5


def _rates(points: list[tuple[float, float]], start: float, end: float) -> tuple[list[float], list[float]]:
    found = windows(points, start, end)
    picked = found[:: max(1, round(STEP_S / 0.1))]
    return [t + 1.0 - start for t, _ in picked], [rate for _, rate in picked]


def phases_svg(
    plan: LoadPlan, results: Sequence[ClassResult], summaries: Sequence[Summary], options: MetastableOptions
) -> str:
    figure, axes = plt.subplots(
        len(results), 4, figsize=(15, 2.6 * len(results) + 0.6), sharex=True, squeeze=False
    )
    titles = ("SLO goodput / s", "retries / s", "server in flight", "server lag ms")
    for row, (result, summary) in enumerate(zip(results, summaries, strict=True)):
        rows = read_client(result.files.mitigations, result.client)
        server = read_server(result.files.server)
        if not rows:
            continue
        start = min(r.timestamp - r.elapsed_s for r in rows)
        end = start + plan.duration_s
        slo_t, slo = _rates([(r.timestamp, r.slo_ok_total) for r in rows], start, end)
        retry_points = [(r.timestamp, r.wire_total - r.launched_total) for r in rows]
        retry_t, retries = _rates(retry_points, start, end)
        panels = axes[row]
        panels[0].plot(slo_t, slo, color="#2e7d32", lw=1.4)
        if summary.pre_trigger_slo_goodput_rps:
            bar = RECOVERY_SHARE * summary.pre_trigger_slo_goodput_rps
            panels[0].axhline(bar, color="#2e7d32", ls=":", lw=1, label=f"recovery bar {bar:.0f}/s")
            panels[0].legend(loc="lower left", fontsize=7)
        panels[1].plot(retry_t, retries, color="#c62828", lw=1.2)
        server_t = [s.timestamp - start for s in server]
        panels[2].plot(server_t, [s.in_flight for s in server], color="#1a237e", lw=1, drawstyle="steps-post")
        panels[3].plot(server_t, [s.lag_ms for s in server], color="#6a1b9a", lw=1)
        verdict = summary.verdict or ""
        when = "" if summary.recovery_s in (None, "never") else f" in {summary.recovery_s:.1f} s"
        for column, panel in enumerate(panels):
            if result.capacity_change is not None:
                band = (result.capacity_change[0] - start, result.capacity_change[1] - start)
                panel.axvspan(*band, color=BAND, alpha=0.5, lw=0)
            panel.grid(alpha=0.3)
            panel.set_ylim(bottom=0)
            panel.set_xlim(0, plan.duration_s)
            head = f"{result.client}: {verdict}{when}" if column == 0 else result.client
            panel.set_title(f"{head} - {titles[column]}", fontsize=9)
    for panel in axes[-1]:
        panel.set_xlabel("seconds since the test started (band: the trigger)")
    figure.tight_layout()
    return svg(figure, "metastable")


def metastable_section(
    plan: LoadPlan, results: Sequence[ClassResult], summaries: Sequence[Summary], options: MetastableOptions
) -> str:
    """HTML for report.html: the verdict table and the phase charts."""
    rows = "".join(
        f"<tr><td>{html.escape(s.client)}</td><td>{_num(s.pre_trigger_slo_goodput_rps)}</td>"
        f"<td>{_num(s.post_trigger_slo_goodput_rps)}</td><td>{s.recovered or ''}</td>"
        f"<td>{s.recovery_s if s.recovery_s is not None else ''}</td>"
        f"<td>{'' if s.peak_share is None else f'{s.peak_share:.0%}'}</td>"
        f"<td>{'' if s.wasted_work_ratio is None else f'{s.wasted_work_ratio:.0%}'}</td>"
        f"<td><b>{s.verdict or ''}</b></td></tr>"
        for s in summaries
    )
    return (
        "<h2>Metastable failure: before, during and after the trigger</h2>"
        f"<p>{html.escape(options.describe())}. {html.escape(RULE)}. recovery s: from the trigger's end to "
        "the start of that sustained stretch; not-back: neither back nor stuck by that rule (a shorter "
        "after-phase, or a level between the two); best after: the best 1 s window in the 30 s after the "
        "trigger, as a share of the pre-trigger level (shown, not judged).</p>"
        '<div class="wide"><table id="metastable-table"><thead><tr><th>client</th>'
        "<th>SLO goodput/s before</th><th>last 10 s</th><th>recovered</th><th>recovery s</th>"
        "<th>best after</th><th>wasted work</th><th>verdict</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></div>"
        f'<div class="chart" id="metastable-phases">{phases_svg(plan, results, summaries, options)}</div>'
    )


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"
