"""The read-only endpoints a sampler or a health check asks: /ping (HEAD), /stats and /metrics.

All three read `TargetState.snapshot()` (or nothing), so they never disagree and add no bookkeeping to
the request path. GET /ping does not get here: the front door answers it before Flask (front_door.py).
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from target_server import metrics
from target_server.front_door import PONG
from target_server.state import TargetState


def monitoring_blueprint(state: TargetState) -> Blueprint:
    monitoring = Blueprint("monitoring", __name__)
    registry = metrics.make_registry(state)

    @monitoring.get("/ping")
    def ping() -> Response:
        """Only HEAD gets here; FrontDoor answers GET /ping before Flask."""
        return Response(PONG, mimetype="text/plain")

    @monitoring.get("/stats")
    def stats() -> Response:
        return jsonify(state.snapshot())

    @monitoring.get("/metrics")
    def prometheus() -> Response:
        return Response(metrics.render(registry), content_type=metrics.CONTENT_TYPE)

    return monitoring
