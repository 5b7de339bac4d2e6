"""The Mitigations tab's trends as JSON (`/hammerlab/mitigations.json`): for each client and worker, the
last 30 s of the limit, the calls in flight, SLO goodput/s and shed/s, each with its value now, low,
high and sparkline. The sparklines are the Target server tab's (`web_tables.sparkline`: one bar per
slice of the window, the slice's highest value), drawn here so the page draws no second kind; the raw
values come along for scripts. A pure function of the board's series: the tests call it directly.
"""

from __future__ import annotations

from typing import Any

from locust_plugin.limit_series import LimitSeries, Point
from locust_plugin.web_tables import sparkline
from mitigations.csv_schema import ALL_WORKERS

# (key, label, Point attribute, format)
TREND_METRICS = (
    ("limit", "Limit", "limit", "{:.0f}"),
    ("in_flight", "In flight", "in_flight", "{:.0f}"),
    ("goodput", "SLO goodput/s", "goodput_per_s", "{:.1f}"),
    ("shed", "Shed/s", "shed_per_s", "{:.1f}"),
)


def _metric(points: list[Point], attribute: str, fmt: str) -> dict[str, Any]:
    values = [v for v in (getattr(p, attribute) for p in points) if v is not None]
    now = getattr(points[-1], attribute) if points else None
    return {
        "now": "-" if now is None else fmt.format(now),
        "low": fmt.format(min(values)) if values else "",
        "high": fmt.format(max(values)) if values else "",
        "trend": sparkline(values),
        "values": [round(float(v), 2) for v in values],
    }


def series_json(series: LimitSeries) -> dict[str, Any]:
    """Rows in the table's order (client, then its workers, then `all`), the `all` rows only when there
    are several workers, as the table does."""
    found = series.series()
    workers = {worker for _, worker in found if worker != ALL_WORKERS}
    keys = [key for key in found if key[1] != ALL_WORKERS or len(workers) > 1]
    keys.sort(key=lambda key: (key[0], key[1] == ALL_WORKERS, key[1]))
    rows = []
    for client, worker in keys:
        points = found[(client, worker)]
        rows.append(
            {
                "client": client,
                "worker": worker,
                "span_s": round(points[-1].at - points[0].at, 1),
                "samples": len(points),
                **{key: _metric(points, attribute, fmt) for key, _, attribute, fmt in TREND_METRICS},
            }
        )
    return {
        "window_s": series.window.window_s,
        "metrics": [{"key": key, "label": label} for key, label, _, _ in TREND_METRICS],
        "rows": rows,
    }
