"""The app factory: one Flask app with its own `TargetState`, its middleware, hooks and route groups.

`create_app(config)` builds the app and keeps its state in `app.extensions["target"]` (`state_of`).
`create_app()` with no argument reads TARGET_* env vars, which is how gunicorn starts it:
`gunicorn -k gevent -w 4 'target_server.app:create_app()'`.

Where the rest lives: the front door that runs before Flask (front_door.py), the route groups as
blueprints (do_work.py, monitoring.py, admin.py), the seed's tasks (tasks.py), how answers are built
(responses.py). What stays here runs around every route: the lag header and the one-line JSON errors.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import gevent
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from target_server.admin import admin_blueprint
from target_server.cluster import under_gunicorn
from target_server.config import Config
from target_server.config_sources import config_from_sources
from target_server.do_work import do_work_blueprint
from target_server.front_door import LAG_HEADER, FrontDoor
from target_server.guard import MAX_BODY_BYTES
from target_server.monitoring import monitoring_blueprint
from target_server.options import ConfigError
from target_server.responses import error_response
from target_server.state import TargetState


def create_app(config: Config | None = None) -> Flask:
    """Build the app. Without a config, read TARGET_* from the environment (one line and exit 3 if bad)."""
    if config is None:
        try:
            config = config_from_sources((), os.environ)
        except ConfigError as error:
            print(f"target_server: error: {error}", file=sys.stderr, flush=True)
            raise SystemExit(3) from None  # gunicorn's "worker failed to boot": stop, don't respawn
    app = Flask("target_server")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES  # a longer body is a 413 before it is read
    state = TargetState(config)
    app.extensions["target"] = state

    app.wsgi_app = FrontDoor(app.wsgi_app, state)  # type: ignore[method-assign]
    if config.otel:
        app.wsgi_app = _traced(app.wsgi_app)  # type: ignore[method-assign]
    if under_gunicorn():
        # Join the other workers' /stats at boot, not at the first request. Under --preload this greenlet
        # runs in the forked worker (ensure_started keys on the pid), or the first request does it.
        gevent.spawn(state.ensure_started)

    @app.after_request
    def _lag_header(response: Response) -> Response:
        response.headers[LAG_HEADER] = f"{state.lag.lag_ms:.1f}"
        return response

    app.register_blueprint(monitoring_blueprint(state))
    app.register_blueprint(do_work_blueprint(state))
    app.register_blueprint(admin_blueprint(state))

    @app.errorhandler(404)
    def _not_found(_exc: Exception) -> tuple[Response, int]:
        message = f"no such endpoint {request.path}; try /doWork, /ping, /stats, /metrics or /admin"
        return error_response(message), 404

    @app.errorhandler(405)
    def _bad_method(_exc: Exception) -> tuple[Response, int]:
        return error_response(f"method {request.method} not allowed on {request.path}"), 405

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        """werkzeug's own refusals (413 body too large, 400 ...) as one JSON line, like every other error."""
        return error_response(f"{exc.code} {exc.name}: {request.method} {request.path}"), exc.code or 400

    return app


def _traced(wsgi_app: Any) -> Any:
    """--otel: a server span per request (tracing.py). OpenTelemetry is imported only then."""
    from target_server.tracing import ServerSpans, TracingError, start_tracing

    try:
        start_tracing(os.environ)  # kept if already set (by `python -m target_server`, or a test)
    except TracingError as error:
        print(f"target_server: error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(3) from None
    return ServerSpans(wsgi_app)


def state_of(app: Flask) -> TargetState:
    """The state `create_app` built this app with (for the server that serves it, and tests)."""
    return app.extensions["target"]
