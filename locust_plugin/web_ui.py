"""The Target server and Mitigations tabs in Locust's web UI, their CSV downloads, and the fault controls.

Locust 2.47's React UI draws one table per extra tab: `extended_tabs` names the tabs, `extended_tables`
gives each its columns, and the rows arrive with every `/stats/requests` poll (every 2 s) under
`extended_stats`. `extended_csv_files` adds links to the Download Data tab. All of that is data, so
the fault buttons, which are not, come from a small script (`static/hammerlab.js`) added to Locust's
index page: it shows a control above the Target server table and posts to `/hammerlab/faults` here,
which forwards to the target's loopback-only `/admin/faults`, and only when the target is on loopback.

Every `/hammerlab/*` route answers loopback clients on a loopback Host only, and no cross-site request
(`web_guard`). A start from the web form is checked against the options' ranges before Locust stores
the values (`options_problem`), so an edited value is refused with one line instead of a runaway test.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from flask import Blueprint, Response, jsonify, make_response, request

from locust_plugin import options
from locust_plugin.csv_log import render
from locust_plugin.mitigation_rows import MitigationRow, join_counts
from locust_plugin.mitigations_board import MitigationsBoard
from locust_plugin.server_sample import SampleInterval, ServerSample
from locust_plugin.server_sampler import ServerSampler
from locust_plugin.target import fault_target, target_host
from locust_plugin.web_forms import MAX_FAULT_BODY, fault_body, swarm_form_problem
from locust_plugin.web_guard import csrf_problem, refusal
from mitigations.checked_url import URLRefused
from mitigations.csv_schema import (
    ALL_WORKERS,
    MITIGATION_COLUMNS,
    SERVER_COLUMNS,
    skip_share,
    too_many_skipped,
)
from mitigations.outbound import fetch


class LiveNumbers(Protocol):
    """What the views read: the server sampler and the mitigations board (a `monitoring.Monitor`). A
    protocol, so this module needs nothing from `monitoring`, which installs it."""

    sampler: ServerSampler
    board: MitigationsBoard

STATIC = Path(__file__).parent / "static"
SERVER_TAB = "target-server"
MITIGATIONS_TAB = "mitigations"
TREND_S = 30.0
SPARK_POINTS = 30
SPARK = "▁▂▃▄▅▆▇█"
ADMIN_TIMEOUT_S = 3.0

TABS = [{"title": "Target server", "key": SERVER_TAB}, {"title": "Mitigations", "key": MITIGATIONS_TAB}]
SERVER_TABLE = [
    {"key": "metric", "title": "Server"},
    {"key": "now", "title": "Now"},
    {"key": "low", "title": f"Low (last {TREND_S:.0f} s)"},
    {"key": "high", "title": f"High (last {TREND_S:.0f} s)"},
    {"key": "trend", "title": f"Last {TREND_S:.0f} s"},
]
MITIGATIONS_TABLE = [
    {"key": "client", "title": "Client"},
    {"key": "worker", "title": "Worker"},
    {"key": "concurrent", "title": "Concurrent (max)"},
    {"key": "launched", "title": "Launched/s"},
    {"key": "shed", "title": "Shed/s"},
    {"key": "causes", "title": "Shed by cause (total)"},
    {"key": "breaker", "title": "Breaker"},
    {"key": "transitions", "title": "Last transitions"},
    {"key": "limiter", "title": "Throttle in flight / queued / limit"},
    {"key": "pool", "title": "Pool in use / waiting"},
    {"key": "timeouts", "title": "Timeouts"},
    {"key": "failures", "title": "Wire failures by kind"},
    {"key": "calls", "title": "Calls: ok / failed / shed / unfinished / pending (launched)"},
    {"key": "slo", "title": "In SLO"},
    {"key": "latency", "title": "p50 / p99 / max ms (from launch)"},
    {"key": "skipped", "title": "Skipped slots"},
    {"key": "deferred", "title": "Deferred: queued / kept / replayed / expired (replay p50, p99)"},
]
# (label, attribute, format)
SERVER_METRICS = (
    ("lag ms", "lag_ms", "{:.0f}"),
    ("in flight", "in_flight", "{:d}"),
    ("concurrent (tasks waiting)", "concurrent", "{:d}"),
    ("sockets", "sockets", "{:d}"),
    ("completed/s", "completed_per_s", "{:.1f}"),
    ("rejected/s (503 too busy)", "rejected_per_s", "{:.1f}"),
    ("errors/s (injected faults)", "errors_per_s", "{:.1f}"),
    ("wasted work (CPU for clients that gave up)", "wasted_work_ratio", "{:.0%}"),
)


# -- table rows (pure: the tests call these directly) --------------------------------------------------------


def sparkline(values: Sequence[float], points: int = SPARK_POINTS) -> str:
    """Unicode bars, one per bucket (the bucket's highest value, so a spike is never averaged away)."""
    if not values:
        return ""
    size = max(1, -(-len(values) // points))
    buckets = [max(values[i : i + size]) for i in range(0, len(values), size)]
    low, high = min(buckets), max(buckets)
    if high == low:
        return SPARK[0] * len(buckets)
    return "".join(SPARK[round((v - low) / (high - low) * (len(SPARK) - 1))] for v in buckets)


def recent(history: Iterable[ServerSample], seconds: float = TREND_S) -> list[ServerSample]:
    samples = list(history)
    if not samples:
        return []
    since = samples[-1].timestamp - seconds
    return [s for s in samples if s.timestamp >= since]


def server_rows(
    history: Iterable[ServerSample],
    status: str,
    is_target: bool = True,
    mapped: Mapping[str, str] | None = None,
) -> list[dict[str, str]]:
    """The Target server table: live value, low, high and a sparkline of the last 30 s per metric.
    A host that is not a Hammerlab target has no such numbers: one line says so, and why. With
    `--server-metrics`, `mapped` (column -> series) says which rows there are and where each comes from."""
    if not is_target:
        return [{"metric": "not a Hammerlab target", "now": status, "low": "", "high": "", "trend": ""}]
    window = recent(history)
    latest = window[-1] if window else None
    rows = []
    for label, attribute, fmt in SERVER_METRICS:
        if mapped is not None:
            series = mapped.get(attribute) or mapped.get(attribute.replace("_per_s", "_total"))
            if series is None:
                continue
            label = f"{label.split(' (')[0]} = {series}"
        values = [v for v in (getattr(s, attribute) for s in window) if v is not None]
        now = getattr(latest, attribute, None) if latest else None
        rows.append(
            {
                "metric": label,
                "now": "-" if now is None else fmt.format(now),
                "low": fmt.format(min(values)) if values else "",
                "high": fmt.format(max(values)) if values else "",
                "trend": sparkline(values),
            }
        )
    if mapped is None:
        faults = "; ".join(latest.fault_details) if latest and latest.fault_details else "none"
        rows.append({"metric": "active faults", "now": faults, "low": "", "high": "", "trend": ""})
    age = f"last {time.time() - latest.timestamp:.1f} s ago" if latest else "no sample yet"
    rows.append({"metric": "sampler", "now": status, "low": "", "high": "", "trend": age})
    return rows


def _num(value: float | int | None, fmt: str = "{}") -> str:
    return "-" if value is None else fmt.format(value)


def describe_transitions(transitions: Iterable[tuple[float, str, str]], now: float) -> str:
    return ", ".join(
        f"{old}→{new} {max(0.0, now - at):.1f} s ago" for at, old, new in reversed(list(transitions))
    )


def describe_deferred(row: MitigationRow) -> str:
    """`12 / 340 / 320 / 8 (4.1 s, 9.8 s)`, or `-` without a defer layer."""
    if row.deferred_total is None:
        return "-"
    counts = f"{_num(row.defer_queue_depth)} / {row.deferred_total} / {_num(row.replayed_total)} / " \
        f"{_num(row.expired_total)}"
    set_aside = ", ".join(
        f"{count} {what}" for count, what in
        ((row.defer_in_doubt_total, "in doubt"), (row.defer_bad_rows_total, "bad rows")) if count
    )
    if set_aside:
        counts = f"{counts}; set aside, never sent: {set_aside}"
    p50, p99 = row.replay_p50_ms, row.replay_p99_ms
    if p50 is None or p99 is None:
        return counts
    return f"{counts} ({p50 / 1000:.1f} s, {p99 / 1000:.1f} s)"


def mitigation_rows(rows: Sequence[MitigationRow], now: float | None = None) -> list[dict[str, str]]:
    """The Mitigations table: per worker and client, and the `all` sums when there are several workers."""
    now = time.time() if now is None else now
    workers = {row.worker for row in rows if row.worker != ALL_WORKERS}
    shown = [row for row in rows if row.worker != ALL_WORKERS or len(workers) > 1]
    shown.sort(key=lambda row: (row.client, row.worker == ALL_WORKERS, row.worker))
    table = []
    for row in shown:
        limiter = "-"
        if row.throttle_in_flight is not None or row.limit is not None:
            limiter = f"{_num(row.throttle_in_flight)} / {_num(row.queue_depth)} / {_num(row.limit)}"
        pool = "-" if row.pool_in_use is None else f"{row.pool_in_use} / {_num(row.pool_waiting)}"
        table.append(
            {
                "client": row.client,
                "worker": row.worker,
                "concurrent": f"{row.concurrent} ({row.max_concurrent})",
                "launched": _num(row.launched_per_s, "{:.0f}"),
                "shed": _num(row.shed_per_s, "{:.0f}"),
                "causes": join_counts(row.shed_by_cause).replace(";", ", ") or "0",
                "breaker": row.breaker_state or "-",
                "transitions": describe_transitions(row.recent_transitions, now) or "-",
                "limiter": limiter,
                "pool": pool,
                "timeouts": str(row.timeouts_total),
                "failures": join_counts(row.failures_by_kind).replace(";", ", ") or "0",
                "calls": f"{row.ok_total} / {row.server_errors_total} / {row.shed_total} / "
                f"{row.unfinished_total} / {row.pending} ({row.launched_total})",
                "slo": _slo(row),
                "latency": _latency(row),
                "skipped": _skipped(row),
                "deferred": describe_deferred(row),
            }
        )
    return table


def _slo(row: MitigationRow) -> str:
    if not row.launched_total or row.slo_ms is None:
        return "-"
    return f"{row.slo_ok_total / row.launched_total:.1%} within {row.slo_ms:g} ms"


def _latency(row: MitigationRow) -> str:
    latency = row.latency
    if not latency.count:
        return "-"
    return f"{latency.p50_ms:.1f} / {latency.p99_ms:.1f} / {latency.max_ms:.1f}"


def _skipped(row: MitigationRow) -> str:
    if not row.skipped:
        return "0"
    share = skip_share(row.launched_total, row.skipped)
    behind = too_many_skipped(row.launched_total, row.skipped)
    return f"{row.skipped} ({share:.1%})" + (" (generator behind: latency understated)" if behind else "")


# -- Flask wiring ------------------------------------------------------------------------------------


def _csv_response(columns: Sequence[str], rows: Iterable[dict[str, str]], name: str) -> Response:
    response = make_response(render(columns, rows))
    response.headers["Content-Type"] = "text/csv; charset=utf-8"
    response.headers["Content-Disposition"] = f"attachment; filename=hammerlab_{name}_{int(time.time())}.csv"
    return response


def forward_fault(host: str, method: str, body: Any) -> tuple[dict[str, Any], int]:
    """Send a fault change to the target's /admin/faults, if the target is on loopback."""
    try:
        target = fault_target(host).join("/admin/faults")
    except URLRefused as refused:
        return {"error": str(refused)}, 403
    if method == "POST" and not isinstance(body, dict):
        return {"error": 'the body must be a JSON object like {"kind": "outage", "duration_s": 10}'}, 400
    url = target.text
    try:
        answer = fetch(
            target,
            method,
            body=json.dumps(body).encode() if method == "POST" else None,
            headers={"Content-Type": "application/json"},
            timeout=ADMIN_TIMEOUT_S,
        )
    except (OSError, http.client.HTTPException) as error:
        return {"error": f"cannot reach {url} ({type(error).__name__})"}, 502
    try:
        data = json.loads(answer.body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return {"error": f"{url} answered HTTP {answer.status} without JSON: is it a Hammerlab target?"}, 502
    return data, answer.status


def options_problem(form: Any) -> str | None:
    """The first Hammerlab option in a /swarm form that is out of range, as one line."""
    for key, value in form.items():
        option = options.BY_DEST.get(key)
        try:
            if option is not None:
                option.parse(value)
            elif key == "server_sample_ms":
                SampleInterval.parse(value)
        except ValueError as error:
            return f"{option.flag}: {error}" if option is not None else str(error)
    return None


def install(environment: Any, monitor: LiveNumbers) -> None:
    """Add the tabs, their routes and the fault control to `environment.web_ui`."""
    web_ui = environment.web_ui
    base = (getattr(environment.parsed_options, "web_base_path", "") or "").rstrip("/")
    web_ui.template_args.update(
        {
            "extended_tabs": TABS,
            "extended_tables": [
                {"key": SERVER_TAB, "structure": SERVER_TABLE},
                {"key": MITIGATIONS_TAB, "structure": MITIGATIONS_TABLE},
            ],
            "extended_csv_files": [
                {"href": "./hammerlab/server.csv", "title": "Download target server samples CSV"},
                {"href": "./hammerlab/mitigations.csv", "title": "Download mitigations CSV"},
            ],
        }
    )
    blueprint = Blueprint(
        "hammerlab",
        __name__,
        url_prefix=f"{base}/hammerlab",
        static_folder=str(STATIC),
        static_url_path="/static",
    )

    @blueprint.before_request
    def _loopback_only() -> tuple[Response, int] | None:
        refused = refusal(request.method, request.remote_addr, request.headers)
        if refused is None:
            return None
        status, line = refused
        return jsonify(error=line), status

    @blueprint.get("/server.csv")
    def server_csv() -> Response:
        return _csv_response(SERVER_COLUMNS, (s.csv_row() for s in monitor.sampler.history), "server")

    @blueprint.get("/mitigations.csv")
    def mitigations_csv() -> Response:
        return _csv_response(MITIGATION_COLUMNS, (r.csv_row() for r in monitor.board.history), "mitigations")

    @blueprint.get("/live")
    def live() -> Response:
        latest = monitor.sampler.latest
        return jsonify(
            host=target_host(environment),
            status=monitor.sampler.status,
            faults=list(latest.fault_details) if latest else [],
            lag_ms=latest.lag_ms if latest else None,
        )

    @blueprint.route("/faults", methods=["POST", "DELETE"])
    def faults() -> tuple[Response, int]:
        body = None
        if request.method == "POST":
            body, problem = fault_body(request.stream.read(MAX_FAULT_BODY + 1))
            if problem:
                return jsonify(error=problem), 400
        data, status = forward_fault(target_host(environment), request.method, body)
        return jsonify(data), status

    app = web_ui.app
    app.register_blueprint(blueprint)
    swarm_path = f"{base}/swarm"

    @app.before_request
    def _refuse_cross_site_and_bad_options() -> tuple[Response, int] | None:
        problem = csrf_problem(request.method, request.headers)
        if problem:
            return jsonify(success=False, message=problem, error=problem), 403
        if request.method == "POST" and request.path == swarm_path:
            problem = options_problem(request.form) or swarm_form_problem(
                request.form, vars(environment.parsed_options) if environment.parsed_options else {}
            )
            if problem:
                return jsonify(success=False, message=problem, host=environment.host), 400
        return None
    stats_path = f"{base}/stats/requests"
    index_paths = {f"{base}/", base or "/"}
    script = (
        f'<link rel="stylesheet" href="{base}/hammerlab/static/hammerlab.css">'
        f'<script src="{base}/hammerlab/static/hammerlab.js" data-base="{base}" '
        f'data-tab="{SERVER_TAB}"></script>'
    )

    @app.after_request
    def _extend(response: Response) -> Response:
        if request.path == stats_path and response.status_code == 200 and response.is_json:
            data = response.get_json()
            extra = [
                {
                    "key": SERVER_TAB,
                    "data": server_rows(
                        monitor.sampler.history,
                        monitor.sampler.status,
                        monitor.sampler.available,
                        monitor.sampler.metrics.columns if monitor.sampler.metrics else None,
                    ),
                },
                {"key": MITIGATIONS_TAB, "data": mitigation_rows(monitor.board.latest_rows())},
            ]
            data["extended_stats"] = [*data.get("extended_stats", []), *extra]
            response.set_data(json.dumps(data))
        elif request.path in index_paths and response.mimetype == "text/html" and response.status_code == 200:
            page = response.get_data(as_text=True)
            if "</body>" in page:
                response.set_data(page.replace("</body>", script + "</body>", 1))
        return response
