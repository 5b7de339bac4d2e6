"""Judging a sweep: the Pareto front of SLO goodput against p99, the knee, and the value to use.

A sweep (`--scenario sweep`, comparison/scenarios/sweep.py) runs one class once per value of one
numeric client option; `benchmarks/pareto.py` adds the adaptive modes as points beside the static caps.
Each point is judged on two numbers only: SLO goodput (higher is better) and p99 (lower is better).

- The front: the points no other point beats on one number without losing on the other (another point
  with at least as much SLO goodput and at most its p99, better on one, dominates it).
- The knee (KNEE_RULE): of the values whose SLO goodput is within KNEE_SHARE of the best value's, the one
  with the lowest p99 (the smaller value on a tie). Any other buys almost no goodput with a longer queue.
  It does not assume which way an option points: for `max-concurrent` it is usually the smallest
  near-best cap, for `adaptive-elasticity` (a larger value settles lower) the largest, which the old rule
  ("the smallest value within KNEE_SHARE") got backwards: it recommended the elasticity with the highest
  p99.
- The recommendation: the knee when it is on the front; otherwise (another value has as much goodput at
  the same p99) the front's value with the lowest p99 among those within KNEE_SHARE of the best.

The drawing (`front_svg`) imports matplotlib inside, so the command line answers at once.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

KNEE_SHARE = 0.95
NEAR = f"within {100 * (1 - KNEE_SHARE):g} % of the best SLO goodput"
KNEE_RULE = f"knee: of the values {NEAR}, the one with the lowest p99"

RULES = f"On the front: no other point has at least its SLO goodput at no more than its p99. The {KNEE_RULE}."


@dataclass(frozen=True)
class Point:
    """One run of a sweep: what it was and the four numbers it is judged and shown by."""

    label: str  # `max-concurrent=16`, or `AdaptiveClient knee` for a point that is not a value
    value: float | None  # the swept value; None for a point that is not one (the benchmark's modes)
    slo_goodput_rps: float
    p50_ms: float | None
    p99_ms: float | None
    lag_p95_ms: float | None

    @property
    def tail(self) -> float:
        """p99 for comparing: a point that answered nothing has an infinite tail."""
        return math.inf if self.p99_ms is None else self.p99_ms


def dominates(a: Point, b: Point) -> bool:
    """`a` has at least `b`'s SLO goodput at no more than its p99, and is better on one of them."""
    return (
        a.slo_goodput_rps >= b.slo_goodput_rps
        and a.tail <= b.tail
        and (a.slo_goodput_rps > b.slo_goodput_rps or a.tail < b.tail)
    )


def front(points: Sequence[Point]) -> list[bool]:
    """For each point, in order: is it on the Pareto front (dominated by no other point)?"""
    return [not any(dominates(other, point) for other in points if other is not point) for point in points]


def _valued(points: Sequence[Point]) -> list[Point]:
    return sorted((p for p in points if p.value is not None), key=lambda p: p.value)  # type: ignore[arg-type, return-value]


def best(points: Sequence[Point]) -> Point | None:
    """The value with the most SLO goodput (the smaller value on a tie)."""
    valued = _valued(points)
    return max(valued, key=lambda p: p.slo_goodput_rps) if valued else None


def knee(points: Sequence[Point]) -> Point | None:
    """KNEE_RULE; None when no value kept a call within the SLO."""
    top = best(points)
    if top is None or top.slo_goodput_rps <= 0:
        return None
    near = [p for p in _valued(points) if p.slo_goodput_rps >= KNEE_SHARE * top.slo_goodput_rps]
    return min(near, key=lambda p: p.tail)  # sorted by value, so the smaller value on a tie


def said(p: Point) -> str:
    """One point's four numbers in words."""
    return (
        f"SLO goodput {p.slo_goodput_rps:.1f}/s, p50 {ms(p.p50_ms)}, p99 {ms(p.p99_ms)}, "
        f"server lag p95 {ms(p.lag_p95_ms)}"
    )


def value_text(value: float) -> str:
    return f"{value:g}"


def ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} ms"


def recommend(points: Sequence[Point], flag: str) -> tuple[Point | None, str]:
    """The value to use and one sentence that says why (module doc); `flag` is `--max-concurrent`."""
    top, bend = best(points), knee(points)
    if top is None or bend is None:
        return None, (
            f"No value of {flag} kept any call within the SLO at this load, so none is recommended: "
            "offer less (--rate-multiplier), give a longer --slo-ms, or check the service."
        )
    valued = _valued(points)  # the choice is among the swept values: an adaptive point beating them all
    on = dict(zip([p.label for p in valued], front(valued), strict=True))  # must not leave none to pick
    near = [p for p in valued if p.slo_goodput_rps >= KNEE_SHARE * top.slo_goodput_rps]
    pick = bend if on[bend.label] else min((p for p in near if on[p.label]), key=lambda p: (p.tail, p.value))
    use = f"Use {flag} {value_text(pick.value)}"  # type: ignore[arg-type]
    mine = f"{pick.slo_goodput_rps:.1f}/s of SLO goodput at p99 {ms(pick.p99_ms)}"
    if pick is top:
        return pick, (
            f"{use}: it gives the most SLO goodput ({mine}) at the lowest p99 of the values {NEAR}."
        )
    against = f"the best, {value_text(top.value)}, gives {top.slo_goodput_rps:.1f}/s at p99 {ms(top.p99_ms)}"  # type: ignore[arg-type]
    if pick is bend:
        return pick, (
            f"{use}: it is the knee, the lowest p99 of the values {NEAR}, and on the Pareto front "
            f"({mine}; {against}); the others add queueing, not goodput."
        )
    return pick, (
        f"{use}: of the values {NEAR} it has the lowest p99 on the Pareto front ({mine}; {against}); "
        f"the knee, {value_text(bend.value)}, has as low a p99 and less SLO goodput."  # type: ignore[arg-type]
    )


HEADER = ("point", "SLO goodput/s", "p50", "p99", "server lag p95", "front", "knee")


def rows(points: Sequence[Point]) -> list[tuple[str, ...]]:
    """The table's cells, one row per point, in the points' order."""
    on, bend = front(points), knee(points)
    return [
        (
            p.label,
            f"{p.slo_goodput_rps:.1f}",
            ms(p.p50_ms),
            ms(p.p99_ms),
            ms(p.lag_p95_ms),
            "yes" if flag else "",
            "yes" if p is bend else "",
        )
        for p, flag in zip(points, on, strict=True)
    ]


def markdown_table(points: Sequence[Point]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + " --- |" * len(HEADER)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows(points)]
    return "\n".join(lines)


def text_table(points: Sequence[Point]) -> str:
    """The terminal's table: columns padded to their widest cell."""
    table = [HEADER, *rows(points)]
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADER))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in table)


def html_table(points: Sequence[Point]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADER)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells) + "</tr>"
        for cells in rows(points)
    )
    return f'<div class="wide"><table><tr>{head}</tr>{body}</table></div>'


def front_svg(points: Sequence[Point], title: str, pick: Point | None = None) -> str:
    """SLO goodput against p99, every point labelled; the front joined by a line, the knee ringed and
    the recommended value starred. Points that answered nothing (no p99) are left out."""
    from comparison.charts import plt, svg

    drawn = [p for p in points if p.p99_ms is not None]
    on = dict(zip([p.label for p in points], front(points), strict=True))
    bend = knee(points)
    figure, axes = plt.subplots(figsize=(7.5, 4.6))
    for p in drawn:
        colour = "#1a237e" if p.value is not None else "#c62828"
        axes.scatter(p.p99_ms, p.slo_goodput_rps, s=46 if on[p.label] else 24, color=colour,
                     alpha=1.0 if on[p.label] else 0.45, zorder=3)  # fmt: skip
        axes.annotate(p.label, (p.p99_ms, p.slo_goodput_rps), textcoords="offset points", xytext=(5, 4),  # type: ignore[arg-type]
                      fontsize=8, color=colour)  # fmt: skip
    edge = sorted((p for p in drawn if on[p.label]), key=lambda p: p.tail)
    if len(edge) > 1:
        axes.plot([p.p99_ms for p in edge], [p.slo_goodput_rps for p in edge], color="#2e7d32", lw=1.4,
                  zorder=2, label="Pareto front")  # fmt: skip
    if bend is not None and bend.p99_ms is not None:
        axes.scatter(bend.p99_ms, bend.slo_goodput_rps, s=190, facecolors="none", edgecolors="#ef6c00",
                     lw=1.6, zorder=4, label="knee")  # fmt: skip
    if pick is not None and pick.p99_ms is not None:
        axes.scatter(pick.p99_ms, pick.slo_goodput_rps, marker="*", s=160, color="#ffb300", zorder=5,
                     label="recommended")  # fmt: skip
    axes.set_xlabel("p99 latency, ms (lower is better)")
    axes.set_ylabel("SLO goodput, requests/s (higher is better)")
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    return svg(figure, "pareto-front")


def page(title: str, intro: str, sentence: str, points: Sequence[Point], chart: str, links: str = "") -> str:
    """report.html of a sweep: the recommendation, the front, the table, where each run's files are."""
    from comparison.charts import STYLE

    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{STYLE}</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="meta">{html.escape(intro)}</p>
<p><strong>{html.escape(sentence)}</strong></p>
<h2>SLO goodput against p99</h2>
<div class="chart" id="pareto-front">{chart}</div>
<p class="meta">{html.escape(RULES)}</p>
<h2>Every point</h2>
{html_table(points)}
{links}
</body></html>
"""
