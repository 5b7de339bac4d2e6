"""The Target server and Mitigations tabs in Locust's web UI, their CSV downloads, and the fault controls.

Locust 2.47's React UI draws one table per extra tab: `extended_tabs` names the tabs, `extended_tables`
gives each its columns, and the rows arrive with every `/stats/requests` poll (every 2 s) under
`extended_stats`. `extended_csv_files` adds links to the Download Data tab. All of that is data, so
the fault buttons, which are not, come from a small script (`static/hammerlab.js`) added to Locust's
index page: it shows a control above the Target server table and posts to `/hammerlab/faults` here,
which forwards to the target's loopback-only `/admin/faults`, and only when the target is on loopback.
The same script draws the Mitigations tab's trends above its table, from `/hammerlab/mitigations.json`
(`web_series`): the last 30 s of each client's limit, in flight, SLO goodput and shed, per worker.

Every `/hammerlab/*` route answers loopback clients on a loopback Host only, and no cross-site request
(`web_guard`). A start from the web form is checked against the options' ranges before Locust stores
the values (`options_problem`), so an edited value is refused with one line instead of a runaway test.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from flask import Blueprint, Response, jsonify, make_response, request

from locust_plugin import options
from locust_plugin.csv_log import render
from locust_plugin.mitigations_board import MitigationsBoard
from locust_plugin.server_sample import SampleInterval
from locust_plugin.server_sampler import ServerSampler
from locust_plugin.target import fault_target, target_host
from locust_plugin.web_forms import MAX_FAULT_BODY, fault_body, swarm_form_problem
from locust_plugin.web_guard import csrf_problem, refusal
from locust_plugin.web_series import series_json
from locust_plugin.web_tables import (
    MITIGATIONS_TAB,
    MITIGATIONS_TABLE,
    SERVER_TAB,
    SERVER_TABLE,
    TABS,
    mitigation_rows,
    server_rows,
)
from mitigations.checked_url import URLRefused
from mitigations.csv_schema import (
    MITIGATION_COLUMNS,
    SERVER_COLUMNS,
)
from mitigations.outbound import fetch


class LiveNumbers(Protocol):
    """What the views read: the server sampler and the mitigations board (a `monitoring.Monitor`). A
    protocol, so this module needs nothing from `monitoring`, which installs it."""

    sampler: ServerSampler
    board: MitigationsBoard


STATIC = Path(__file__).parent / "static"
ADMIN_TIMEOUT_S = 3.0


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

    @blueprint.get("/mitigations.json")
    def mitigations_json() -> Response:
        return jsonify(series_json(monitor.board.series))

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
        f'data-tab="{SERVER_TAB}" data-trends-tab="{MITIGATIONS_TAB}"></script>'
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
