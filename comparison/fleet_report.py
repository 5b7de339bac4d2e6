"""The fleet section of report.html: every instance's limit over time, their sum, and the numbers.

One row of charts per class: on the left each instance's limit (AdaptiveClient's adaptive limit, or for
a class without one the calls it had in flight, against its static cap where it has one), on the right
their sum. A fleet that converges shows N lines settling near each other, and a sum near what the
server can take; a static cap shows N flat lines whose sum is N times the single-instance value.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from comparison.charts import svg
from comparison.fleet import TARGET_HEAD, Fleet, instance_head, instance_rows, target_rows
from comparison.plan import LoadPlan


def limits_svg(plan: LoadPlan, fleets: Sequence[Fleet]) -> str:
    figure, axes = plt.subplots(
        len(fleets), 2, figsize=(13, 2.8 * len(fleets) + 0.6), sharex=True, squeeze=False
    )
    for row, fleet in enumerate(fleets):
        each, total = axes[row]
        what = "adaptive limit" if fleet.has_limit else "calls in flight"
        for instance in fleet.instances:
            each.plot(instance.t, instance.limit, lw=1.2, drawstyle="steps-post", label=instance.name)
        total.plot(fleet.sum_t, fleet.sum_limit, lw=1.6, color="#212121", drawstyle="steps-post",
                   label=f"sum of {len(fleet.instances)} instances")  # fmt: skip
        each.set_title(f"{fleet.client}: {what} of each instance", fontsize=10)
        total.set_title(f"{fleet.client}: {what}, summed over the fleet", fontsize=10)
        each.legend(loc="upper right", fontsize=7, ncol=4)
        total.legend(loc="upper right", fontsize=7)
        for one in (each, total):
            one.grid(alpha=0.3)
            one.set_ylim(bottom=0)
            one.set_xlim(0, plan.duration_s + plan.drain_s)
            one.axvline(plan.duration_s, color="#9e9e9e", lw=0.8, ls=":")
    for one in axes[-1]:
        one.set_xlabel("seconds since the class's test started (dotted: end of launches)")
    figure.tight_layout()
    return svg(figure, "fleet")


def _table(fleet: Fleet, judged: bool) -> str:
    """The targets and the instance table of comparison/fleet.py, as HTML."""
    rows = []
    if judged:
        rows.append(_head("fleet-targets", TARGET_HEAD))
        for *cells, verdict in target_rows(fleet):
            rows.append(
                "<tr>"
                + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
                + f"<td><b>{verdict}</b></td></tr>"
            )
        rows.append("</tbody></table><br>")
    rows.append(_head("fleet-instances", instance_head(fleet)))
    for instance, (name, *cells) in zip(fleet.instances, instance_rows(fleet), strict=True):
        rows.append(
            f"<tr><td title='{html.escape(instance.worker)}'>{name}</td>"
            + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
            + "</tr>"
        )
    rows.append("</tbody></table>")
    return "".join(rows)


def _head(kind: str, head: Sequence[str]) -> str:
    return (
        f"<table class='{kind}'><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"
    )


def fleet_section(plan: LoadPlan, fleets: Sequence[Fleet], judged: bool) -> str:
    """HTML for report.html, placed after the per-class charts."""
    if not fleets:
        return ""
    parts = [
        "<h2>Fleet: every client instance</h2>",
        f"<p>Each class ran as {plan.workers} instances (Locust workers), each offered "
        f"{plan.offered_rps / plan.workers:.1f} requests/s. Jain's fairness index over the instances' SLO "
        "goodput is 1 when they share equally and 1/n when one takes everything.</p>",
    ]
    for fleet in fleets:
        index = "n/a" if fleet.jain is None else f"{fleet.jain:.3f}"
        parts.append(f"<h3>{html.escape(fleet.client)}: Jain's index {index}</h3>")
        parts.append(f'<div class="wide">{_table(fleet, judged)}</div>')
    parts.append(f'<div class="chart" id="fleet-limits">{limits_svg(plan, fleets)}</div>')
    return "\n".join(parts)
