"""/admin: faults, run-time config and reset, for this machine only (guard.admin_problem).

Every change goes through `TargetState`, which under gunicorn also writes it to the file the workers
share (cluster.py), so any worker may answer. Bodies are strict JSON (guard.parse_json); anything that
cannot be used is a 400 with one line naming the value and what is allowed.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from target_server.faults import MAX_DURATION_S, Fault, FaultError
from target_server.guard import InputError, admin_problem, parse_json
from target_server.options import ConfigError
from target_server.responses import error_response
from target_server.state import TargetState


def admin_blueprint(state: TargetState) -> Blueprint:
    admin = Blueprint("admin", __name__, url_prefix="/admin")

    @admin.before_request
    def _loopback_only() -> tuple[Response, int] | None:
        problem = admin_problem(request.environ)
        if problem is not None:
            status, message = problem
            return error_response(message), status
        return None

    @admin.get("/faults")
    def list_faults() -> Response:
        now = state.wall()
        return jsonify(faults=[f.to_json(now) for f in state.control.faults.active(now)])

    @admin.post("/faults")
    def add_fault() -> tuple[Response, int]:
        try:
            fault = Fault.from_json(_json_body())
        except (FaultError, InputError, TypeError) as error:
            return error_response(str(error)), 400
        active = state.add_fault(fault)
        return jsonify(fault=active.to_json(state.wall())), 201

    @admin.delete("/faults")
    def clear_faults() -> Response:
        return jsonify(removed=state.clear_faults())

    @admin.delete("/faults/<fault_id>")
    def remove_fault(fault_id: str) -> tuple[Response, int]:
        if not state.remove_fault(fault_id):
            return error_response(f"no active fault {fault_id!r}; GET /admin/faults lists them"), 404
        return jsonify(removed=1), 200

    @admin.get("/config")
    def get_config() -> Response:
        stats = state.snapshot()
        return jsonify(config=stats["config"], overrides=stats["overrides"])

    @admin.post("/config")
    def set_config() -> tuple[Response, int]:
        try:
            body = _json_body()
        except InputError as error:
            return error_response(str(error)), 400
        example = '{"sync_work_ms": 20, "duration_s": 20}'
        if not isinstance(body, dict):
            return error_response(f"body must be a JSON object like {example}"), 400
        changes = dict(body)
        duration = changes.pop("duration_s", None)
        if not changes:
            return error_response(f"body names no option to change; send one like {example}"), 400
        if duration is not None and (
            isinstance(duration, bool)
            or not isinstance(duration, int | float)
            or not 0 < duration <= MAX_DURATION_S
        ):
            return error_response(
                f"duration_s: must be a number > 0 and <= {MAX_DURATION_S} (or null), got {duration!r}"
            ), 400
        try:
            state.set_overrides(changes, duration)
        except ConfigError as error:
            return error_response(str(error)), 400
        return get_config(), 200

    @admin.delete("/config")
    def clear_config() -> Response:
        state.clear_overrides()
        return get_config()

    @admin.post("/reset")
    def reset() -> Response:
        return jsonify(reset_count=state.reset())

    return admin


def _json_body() -> Any:
    """The request body as strict JSON (guard.parse_json). Raises InputError with one line."""
    try:
        data = request.get_data(cache=True)
    except OSError:  # a short or broken body under gunicorn (pywsgi's handler reads bodies up front)
        raise InputError("body: cannot be read to its end") from None
    return parse_json(data)
