"""The Flask app: the seed's /doWork, plus /ping, /stats, /metrics and the loopback-only /admin.

`create_app(config)` builds one app with its own `TargetState` (kept in `app.extensions["target"]`).
`create_app()` with no argument reads TARGET_* env vars, which is how gunicorn starts it:
`gunicorn -k gevent -w 4 'target_server.app:create_app()'`.
"""

from __future__ import annotations

import errno
import math
import os
import socket
import struct
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import gevent
from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from target_server import metrics
from target_server.busy import busy_spin
from target_server.cluster import under_gunicorn
from target_server.config import Config, check_work
from target_server.config_sources import config_from_sources
from target_server.criticality import criticality_of
from target_server.deadline import (
    DEADLINE_ENVIRON,
    EXPIRED_HEADER,
    Deadline,
    DeadlineError,
    deadline_from,
    kernel_wait_s,
)
from target_server.faults import MAX_DURATION_S, ActiveFault, Fault, FaultError
from target_server.guard import (
    MAX_BODY_BYTES,
    InputError,
    admin_problem,
    parse_json,
    query_values,
)
from target_server.latency_profile import profile_applies
from target_server.options import OPTION_BY_NAME, QUERY_OPTIONS, ConfigError
from target_server.state import TargetState
from target_server.tracing import CPU_KEY, FAULT_KEY, OUTCOME_KEY

LAG_HEADER = "X-Server-Lag-Ms"
SOCKET_KEYS = ("hammerlab.socket", "gunicorn.socket")
HANG_POLL_S = 0.25
PONG = b"pong"
DONE = b'{"result": "done!"}'
TOO_BUSY = b'{"error": "too busy!"}'
EXPIRED_BODY = b'{"error": "deadline expired"}'
# A reset fault sends the headers and this much of a longer body, then resets the connection.
RESET_PARTIAL = b'{"result": "do'
RESET_CLAIMED_LENGTH = 64


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
    registry = metrics.make_registry(state)

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

    @app.get("/ping")
    def ping() -> Response:
        """Only HEAD gets here; FrontDoor answers GET /ping before Flask."""
        return Response(PONG, mimetype="text/plain")

    @app.get("/doWork")
    def do_work() -> Response:
        return metrics.timed(state, lambda: _do_work(state))

    @app.get("/stats")
    def stats() -> Response:
        return jsonify(state.snapshot())

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(metrics.render(registry), content_type=metrics.CONTENT_TYPE)

    app.register_blueprint(_admin_blueprint())

    @app.errorhandler(404)
    def _not_found(_exc: Exception) -> tuple[Response, int]:
        return _error(f"no such endpoint {request.path}; try /doWork, /ping, /stats, /metrics or /admin"), 404

    @app.errorhandler(405)
    def _bad_method(_exc: Exception) -> tuple[Response, int]:
        return _error(f"method {request.method} not allowed on {request.path}"), 405

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        """werkzeug's own refusals (413 body too large, 400 ...) as one JSON line, like every other error."""
        return _error(f"{exc.code} {exc.name}: {request.method} {request.path}"), exc.code or 400

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
    return app.extensions["target"]


def _saying_close(start_response: Any) -> Any:
    """Answer a `Connection: close` request with `Connection: close` (RFC 9112 §9.6).

    pywsgi closes such a connection but, on HTTP/1.1, does not say so; a client pool then keeps the
    socket and may send its next request into the closed connection, which looks like a reset.
    """

    def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return start_response(status, [*headers, ("Connection", "close")], exc_info)

    return start


class FrontDoor:
    """WSGI middleware in front of Flask: per-process start-up, socket tracking, and /ping.

    /ping is answered here, without Flask's request machinery (about 60 us a request, more than pywsgi
    itself), so a health check or a latency probe costs almost nothing even when the server is busy.
    """

    def __init__(self, app: Any, state: TargetState) -> None:
        self.app = app
        self.state = state

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        state = self.state
        state.ensure_started()
        sock = environ.get("gunicorn.socket")
        if sock is not None:
            state.track_socket(sock)
        if environ.get("HTTP_CONNECTION", "").lower() == "close":
            start_response = _saying_close(start_response)
        if environ.get("PATH_INFO") == "/ping" and environ.get("REQUEST_METHOD") == "GET":
            start_response(
                "200 OK",
                [
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Content-Length", "4"),
                    (LAG_HEADER, f"{state.lag.lag_ms:.1f}"),
                ],
            )
            return [PONG]
        return self.app(environ, start_response)


# -- /doWork ------------------------------------------------------------------------------------------


def _ended(state: TargetState, counter: str, outcome: str) -> None:
    """Count how a /doWork request ended, and leave it in the environ for a server span (tracing.py)."""
    setattr(state.totals, counter, getattr(state.totals, counter) + 1)
    request.environ[OUTCOME_KEY] = outcome


def _do_work(state: TargetState) -> Response:
    """Every request counted in `requests` ends in exactly one of completed, rejected, errors,
    bad_requests, abandoned and expired (`_ended`)."""
    totals, gauges = state.totals, state.gauges
    totals.requests += 1
    gauges.enter_request()
    try:
        config = state.config
        try:
            expansion, delay_ms, work_ms = _work_params(config)
            client = _client_socket()
            waited = kernel_wait_s(client) if DEADLINE_ENVIRON in request.environ else 0.0
            deadline = deadline_from(request.environ, waited_s=waited)
            criticality = criticality_of(request.environ)
        except (ConfigError, InputError, DeadlineError) as error:
            _ended(state, "bad_requests", "bad-request")
            return _json_response(400, {"error": str(error)})
        totals.count_criticality(criticality, "requests")
        if config.profile is not None and profile_applies(request.args, state.control.overrides):
            delay_ms, work_ms = config.profile.split(state.quantiles.next())
        if config.drop_expired and deadline is not None and deadline.expired():
            return _expired(state)
        verdict = state.control.faults.decide(state.wall())
        if verdict.outage is not None:
            totals.count_fault("outage")
            request.environ[FAULT_KEY] = "outage"
            _ended(state, "errors", "error")
            retry = math.ceil(verdict.outage.remaining_s(state.wall()) or 1)
            return _json_response(verdict.outage.fault.status, {"error": "outage"}, retry_after=retry)
        if state.should_shed(config, criticality):
            totals.count_criticality(criticality, "rejected")
            _ended(state, "rejected", "rejected")
            return _raw_response(503, TOO_BUSY, retry_after=config.retry_after_s)
        for kind in verdict.hit:
            totals.count_fault(kind)
        if verdict.hit:
            request.environ[FAULT_KEY] = ",".join(verdict.hit)
        if verdict.delay_ms:
            gevent.sleep(verdict.delay_ms / 1000)
        if verdict.terminal is not None:
            _ended(state, "errors", "error")
            return _fail(state, verdict.terminal)
        work = Work(
            delay_ms,
            work_ms,
            client,
            deadline,
            skip_abandoned=config.skip_abandoned,
            drop_expired=config.drop_expired,
        )
        ended = _run_tasks(state, expansion, work)
        request.environ[CPU_KEY] = sum(work.cpu_ms)
        if ended == EXPIRED:
            return _expired(state)
        if ended == ABANDONED:
            _ended(state, "abandoned", "abandoned")
            return _raw_response(499, b'{"error": "client closed the connection"}')
        totals.count_criticality(criticality, "completed")
        _ended(state, "completed", "completed")
        return _raw_response(200, DONE)
    finally:
        gauges.in_flight -= 1


def _expired(state: TargetState) -> Response:
    """The fast 504 of --drop-expired: the client's propagated deadline has passed, the work is not done."""
    _ended(state, "expired", "expired")
    response = _raw_response(504, EXPIRED_BODY)
    response.headers[EXPIRED_HEADER] = "1"
    return response


def _work_params(config: Config) -> tuple[int, float, float]:
    """expansion, task_delay_ms and sync_work_ms: the config's, or this request's query overrides, whose
    blocking work (expansion x sync_work_ms) must stay under max_work_ms. Raises ConfigError/InputError."""
    values = {
        "expansion": config.expansion,
        "task_delay_ms": config.task_delay_ms,
        "sync_work_ms": config.sync_work_ms,
    }
    for key, raw in query_values(request.environ.get("QUERY_STRING", "")).items():
        if key not in QUERY_OPTIONS:
            raise ConfigError(key, f"unknown query parameter; allowed: {', '.join(QUERY_OPTIONS)}")
        values[key] = OPTION_BY_NAME[key].parse(raw)
    check_work(values["expansion"], values["sync_work_ms"], config.max_work_ms)
    return values["expansion"], values["task_delay_ms"], values["sync_work_ms"]


DONE_WORK, ABANDONED, EXPIRED = "done", "abandoned", "expired"


@dataclass(frozen=True)
class Work:
    """What each task of one request does, and what it checks before its CPU-bound part."""

    delay_ms: float
    work_ms: float
    client: socket.socket | None
    deadline: Deadline | None
    skip_abandoned: bool
    drop_expired: bool
    cpu_ms: list[float] = field(default_factory=list)  # what each task spent, for the server span


def _run_tasks(state: TargetState, expansion: int, work: Work) -> str:
    """Run the tasks: EXPIRED if any was dropped for its deadline, else ABANDONED if any skipped its
    work because the client hung up, else DONE_WORK."""
    if expansion == 1:
        return _task(state, work)
    tasks = [gevent.spawn(_task, state, work) for _ in range(expansion)]
    gevent.joinall(tasks, raise_error=True)
    ends = {task.value for task in tasks}
    return EXPIRED if EXPIRED in ends else ABANDONED if ABANDONED in ends else DONE_WORK


def _task(state: TargetState, work: Work) -> str:
    """The seed's task: wait without blocking, then block the loop with CPU work, unless nobody waits
    for the answer any more (the work a metastable server wastes). Its CPU time is counted, and counted
    as wasted when the client had given up by the time it finished."""
    state.gauges.enter_task()
    try:
        gevent.sleep(work.delay_ms / 1000)
    finally:
        state.gauges.concurrent -= 1
    state.totals.tasks_completed += 1
    if work.work_ms <= 0:
        return DONE_WORK
    if work.drop_expired and work.deadline is not None and work.deadline.remaining_s() * 1000 < work.work_ms:
        return EXPIRED  # the deadline has passed, or will have before this work could finish
    if work.skip_abandoned and work.client is not None and _hung_up(work.client):
        return ABANDONED
    started = time.thread_time()
    busy_spin(work.work_ms)
    spent_ms = (time.thread_time() - started) * 1000
    totals = state.totals
    totals.work_cpu_ms += spent_ms
    work.cpu_ms.append(spent_ms)
    gone = work.deadline is not None and work.deadline.expired()
    if gone or (work.client is not None and _hung_up(work.client)):
        totals.wasted_cpu_ms += spent_ms
    return DONE_WORK


def _client_socket() -> socket.socket | None:
    """The OS socket under this request (pywsgi or gunicorn), for the hung-up check."""
    sock = next((request.environ[k] for k in SOCKET_KEYS if k in request.environ), None)
    return getattr(sock, "_sock", sock)  # gevent wraps the OS socket; peek at it without gevent's wait


def _hung_up(sock: socket.socket) -> bool:
    """True if the client closed or reset its connection: a non-blocking MSG_PEEK read sees EOF.

    A client that pipelined its next request shows data, and one that is just waiting shows nothing
    (EAGAIN): both still want the answer. A half-close (shutdown(SHUT_WR)) also reads as EOF; HTTP
    clients that wait for an answer do not do that.
    """
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:  # ECONNRESET, or the socket is already closed
        return True


def _fail(state: TargetState, active: ActiveFault) -> Response:
    kind = active.fault.kind
    if kind == "error":
        return _json_response(active.fault.status, {"error": "injected fault"})
    if kind == "hang":
        # Never answer. Hold the connection until the fault is removed or expires, then drop it silently.
        while state.control.faults.is_active(active.id, state.wall()):
            gevent.sleep(HANG_POLL_S)
        return _abort_connection(hard=False, partial=b"")
    return _abort_connection(hard=True, partial=RESET_PARTIAL)


def _abort_connection(*, hard: bool, partial: bytes) -> Response:
    """End the connection mid-response: RST when `hard` (the client sees ECONNRESET), else a plain close.

    The WSGI servers (gevent pywsgi, gunicorn) treat an ECONNRESET raised while sending the body as the
    client going away: they close the socket quietly. SO_LINGER 0 turns that close into a reset.
    """
    sock = next((request.environ[k] for k in SOCKET_KEYS if k in request.environ), None)

    def body() -> Iterator[bytes]:
        if partial:
            yield partial
        if hard and sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raise ConnectionResetError(errno.ECONNRESET, "connection dropped by an injected fault")

    response = Response(body(), status=200, mimetype="application/json")
    response.headers["Content-Length"] = str(RESET_CLAIMED_LENGTH)
    return response


def _raw_response(status: int, body: bytes, retry_after: int | None = None) -> Response:
    response = Response(body, status=status, mimetype="application/json")
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def _json_response(status: int, data: dict[str, Any], retry_after: int | None = None) -> Response:
    response = jsonify(data)
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def _error(message: str) -> Response:
    return jsonify(error=message)


# -- /admin ------------------------------------------------------------------------------------------------


def _admin_blueprint() -> Blueprint:
    admin = Blueprint("admin", __name__, url_prefix="/admin")

    def state() -> TargetState:
        return state_of(current_app)  # type: ignore[arg-type]

    @admin.before_request
    def _loopback_only() -> tuple[Response, int] | None:
        problem = admin_problem(request.environ)
        if problem is not None:
            status, message = problem
            return _error(message), status
        return None

    @admin.get("/faults")
    def list_faults() -> Response:
        now = state().wall()
        return jsonify(faults=[f.to_json(now) for f in state().control.faults.active(now)])

    @admin.post("/faults")
    def add_fault() -> tuple[Response, int]:
        try:
            fault = Fault.from_json(_json_body())
        except (FaultError, InputError, TypeError) as error:
            return _error(str(error)), 400
        active = state().add_fault(fault)
        return jsonify(fault=active.to_json(state().wall())), 201

    @admin.delete("/faults")
    def clear_faults() -> Response:
        return jsonify(removed=state().clear_faults())

    @admin.delete("/faults/<fault_id>")
    def remove_fault(fault_id: str) -> tuple[Response, int]:
        if not state().remove_fault(fault_id):
            return _error(f"no active fault {fault_id!r}; GET /admin/faults lists them"), 404
        return jsonify(removed=1), 200

    @admin.get("/config")
    def get_config() -> Response:
        stats = state().snapshot()
        return jsonify(config=stats["config"], overrides=stats["overrides"])

    @admin.post("/config")
    def set_config() -> tuple[Response, int]:
        try:
            body = _json_body()
        except InputError as error:
            return _error(str(error)), 400
        example = '{"sync_work_ms": 20, "duration_s": 20}'
        if not isinstance(body, dict):
            return _error(f"body must be a JSON object like {example}"), 400
        changes = dict(body)
        duration = changes.pop("duration_s", None)
        if not changes:
            return _error(f"body names no option to change; send one like {example}"), 400
        if duration is not None and (
            isinstance(duration, bool)
            or not isinstance(duration, int | float)
            or not 0 < duration <= MAX_DURATION_S
        ):
            return _error(
                f"duration_s: must be a number > 0 and <= {MAX_DURATION_S} (or null), got {duration!r}"
            ), 400
        try:
            state().set_overrides(changes, duration)
        except ConfigError as error:
            return _error(str(error)), 400
        return get_config(), 200

    @admin.delete("/config")
    def clear_config() -> Response:
        state().clear_overrides()
        return get_config()

    @admin.post("/reset")
    def reset() -> Response:
        return jsonify(reset_count=state().reset())

    return admin


def _json_body() -> Any:
    """The request body as strict JSON (guard.parse_json). Raises InputError with one line."""
    try:
        data = request.get_data(cache=True)
    except OSError:  # a short or broken body under gunicorn (pywsgi's handler reads bodies up front)
        raise InputError("body: cannot be read to its end") from None
    return parse_json(data)
