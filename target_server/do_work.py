"""/doWork, the seed's endpoint: read the request, then shed it, fail it by an injected fault, or run its
tasks (tasks.py), and count how it ended.

Every request counted in `requests` ends in exactly one of completed, rejected, errors, bad_requests,
abandoned and expired (`_ended`), and leaves that outcome in the WSGI environ for a server span
(tracing.py). Injected faults answer here too: an error status, an outage's 503 with Retry-After, or a
connection that hangs or is reset mid-response.
"""

from __future__ import annotations

import errno
import math
import socket
import struct
from collections.abc import Iterator

import gevent
from flask import Blueprint, Response, request

from target_server import metrics
from target_server.config import Config, check_work
from target_server.connections import client_socket, os_socket
from target_server.criticality import criticality_of
from target_server.deadline import (
    DEADLINE_ENVIRON,
    EXPIRED_HEADER,
    DeadlineError,
    deadline_from,
    kernel_wait_s,
)
from target_server.faults import ActiveFault
from target_server.guard import InputError, query_values
from target_server.latency_profile import profile_applies
from target_server.options import OPTION_BY_NAME, QUERY_OPTIONS, ConfigError
from target_server.responses import json_response, raw_response
from target_server.state import TargetState
from target_server.tasks import ABANDONED, EXPIRED, Work, run_tasks
from target_server.tracing import CPU_KEY, FAULT_KEY, OUTCOME_KEY

HANG_POLL_S = 0.25
DONE = b'{"result": "done!"}'
TOO_BUSY = b'{"error": "too busy!"}'
EXPIRED_BODY = b'{"error": "deadline expired"}'
# A reset fault sends the headers and this much of a longer body, then resets the connection.
RESET_PARTIAL = b'{"result": "do'
RESET_CLAIMED_LENGTH = 64


def do_work_blueprint(state: TargetState) -> Blueprint:
    work = Blueprint("do_work", __name__)

    @work.get("/doWork")
    def do_work() -> Response:
        return metrics.timed(state, lambda: _do_work(state))

    return work


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
            client = os_socket(request.environ)
            waited = kernel_wait_s(client) if DEADLINE_ENVIRON in request.environ else 0.0
            deadline = deadline_from(request.environ, waited_s=waited)
            criticality = criticality_of(request.environ)
        except (ConfigError, InputError, DeadlineError) as error:
            _ended(state, "bad_requests", "bad-request")
            return json_response(400, {"error": str(error)})
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
            return json_response(verdict.outage.fault.status, {"error": "outage"}, retry_after=retry)
        if state.should_shed(config, criticality):
            totals.count_criticality(criticality, "rejected")
            _ended(state, "rejected", "rejected")
            return raw_response(503, TOO_BUSY, retry_after=config.retry_after_s)
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
        ended = run_tasks(state, expansion, work)
        request.environ[CPU_KEY] = sum(work.cpu_ms)
        if ended == EXPIRED:
            return _expired(state)
        if ended == ABANDONED:
            _ended(state, "abandoned", "abandoned")
            return raw_response(499, b'{"error": "client closed the connection"}')
        totals.count_criticality(criticality, "completed")
        _ended(state, "completed", "completed")
        return raw_response(200, DONE)
    finally:
        gauges.in_flight -= 1


def _expired(state: TargetState) -> Response:
    """The fast 504 of --drop-expired: the client's propagated deadline has passed, the work is not done."""
    _ended(state, "expired", "expired")
    response = raw_response(504, EXPIRED_BODY)
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


# -- injected faults that end the connection ----------------------------------------------------------


def _fail(state: TargetState, active: ActiveFault) -> Response:
    kind = active.fault.kind
    if kind == "error":
        return json_response(active.fault.status, {"error": "injected fault"})
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
    sock = client_socket(request.environ)

    def body() -> Iterator[bytes]:
        if partial:
            yield partial
        if hard and sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raise ConnectionResetError(errno.ECONNRESET, "connection dropped by an injected fault")

    response = Response(body(), status=200, mimetype="application/json")
    response.headers["Content-Length"] = str(RESET_CLAIMED_LENGTH)
    return response
