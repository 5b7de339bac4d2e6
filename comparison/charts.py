"""The drawing helpers report.html and every scenario's section share: figures as inline SVG, the
per-class time series on the elapsed-seconds axis, the offered-load line, the page style.

matplotlib is set to Agg here, once, before pyplot loads: no display on this machine.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display here
import matplotlib.pyplot as plt

from comparison.plan import LoadPlan
from comparison.readers import ClientRow, ServerRow, read_client, read_server
from comparison.summary import ClassResult

RATE_WINDOW_S = 1.0
COLOURS = {"goodput": "#2e7d32", "errors": "#c62828", "shed": "#9e9e9e", "offered": "#1a237e"}
_XML_PROLOG = re.compile(r"^.*?(?=<svg)", re.S)


@dataclass(frozen=True)
class Series:
    """One class's time series, on the elapsed-seconds axis."""

    client: str
    t: list[float]
    goodput: list[float]
    slo_goodput: list[float]
    errors: list[float]
    shed: list[float]
    client_t: list[float]
    concurrent: list[int]
    server_t: list[float]
    lag: list[float]
    sockets: list[float]  # nan where nothing was mapped
    outage: tuple[float, float] | None
    capacity_change: tuple[float, float] | None = None
    deferred_queue: list[int] | None = None  # DeferredClient only: calls kept on disk for a replay


Rates = tuple[list[float], list[float], list[float], list[float], list[float]]


def _windowed_rates(rows: Sequence[ClientRow]) -> Rates:
    """Goodput, SLO goodput, errors and shed per second over a trailing RATE_WINDOW_S, at every sample."""
    t: list[float] = []
    good: list[float] = []
    slo: list[float] = []
    errors: list[float] = []
    shed: list[float] = []
    start = 0
    for end, row in enumerate(rows):
        while start + 1 < end and rows[start + 1].timestamp <= row.timestamp - RATE_WINDOW_S:
            start += 1
        first = rows[start]
        seconds = row.timestamp - first.timestamp
        if end == 0 or seconds <= 0:
            continue
        t.append(row.elapsed_s)
        good.append(max(0.0, (row.good_total - first.good_total) / seconds))
        slo.append(max(0.0, (row.slo_ok_total - first.slo_ok_total) / seconds))
        errors.append(max(0.0, (row.wire_failures_total - first.wire_failures_total) / seconds))
        shed.append(max(0.0, (row.shed_total - first.shed_total) / seconds))
    return t, good, slo, errors, shed


def series_for(result: ClassResult) -> Series:
    client_rows = sorted(read_client(result.files.mitigations, result.client), key=lambda r: r.timestamp)
    server_rows: list[ServerRow] = sorted(read_server(result.files.server), key=lambda r: r.timestamp)
    t, good, slo, errors, shed = _windowed_rates(client_rows)
    reference = server_rows[0] if server_rows else (client_rows[0] if client_rows else None)
    base = None if reference is None else reference.timestamp - reference.elapsed_s  # the test's start

    def elapsed(window: tuple[float, float] | None) -> tuple[float, float] | None:
        return None if window is None or base is None else (window[0] - base, window[1] - base)

    return Series(
        client=result.client,
        t=t,
        goodput=good,
        slo_goodput=slo,
        errors=errors,
        shed=shed,
        client_t=[row.elapsed_s for row in client_rows],
        concurrent=[row.concurrent for row in client_rows],
        server_t=[row.elapsed_s for row in server_rows],
        lag=[math.nan if row.lag_ms is None else row.lag_ms for row in server_rows],  # not mapped: a gap
        sockets=[math.nan if row.sockets is None else row.sockets for row in server_rows],
        outage=elapsed(result.outage),
        capacity_change=elapsed(result.capacity_change),
        deferred_queue=(
            [row.defer_queue_depth or 0 for row in client_rows]
            if any(row.defer_queue_depth is not None for row in client_rows)
            else None
        ),
    )


def svg(figure: Any, salt: str) -> str:
    """The figure as an inline <svg> element (no XML prolog), with ids unique to this figure."""
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        figure.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(figure)
    return _XML_PROLOG.sub("", buffer.getvalue(), count=1)


def shade_events(axes: Any, series: Series) -> None:
    """The event windows of one class: red for an outage, blue for a capacity change."""
    if series.outage is not None:
        axes.axvspan(*series.outage, color="#ffcdd2", alpha=0.6, lw=0, zorder=0)
    if series.capacity_change is not None:
        axes.axvspan(*series.capacity_change, color="#bbdefb", alpha=0.6, lw=0, zorder=0)


def offered_line(plan: LoadPlan) -> tuple[list[float], list[float]]:
    steps = [i * 0.05 for i in range(int(plan.duration_s / 0.05) + 1)]
    return steps, [plan.offered_at(t) for t in steps]


STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1500px; padding: 0 16px;
       color: #212121; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; }
table { border-collapse: collapse; font-size: 12px; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; white-space: nowrap; }
th { background: #f5f5f5; } td:first-child, th:first-child { text-align: left; }
.wide { overflow-x: auto; } .meta { color: #555; } .chart svg { max-width: 100%; height: auto; }
"""
