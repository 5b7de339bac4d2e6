"""The WSGI middleware in front of Flask: per-process start-up, socket tracking, `Connection: close`,
and GET /ping answered before Flask's request machinery.

Flask's machinery costs about 60 us a request, more than pywsgi itself, so answering /ping here keeps a
health check or a latency probe almost free even when the server is busy.
"""

from __future__ import annotations

from typing import Any

from target_server.state import TargetState

LAG_HEADER = "X-Server-Lag-Ms"  # every answer carries this process's smoothed lag (the app adds it too)
PONG = b"pong"


def saying_close(start_response: Any) -> Any:
    """Answer a `Connection: close` request with `Connection: close` (RFC 9112 §9.6).

    pywsgi closes such a connection but, on HTTP/1.1, does not say so; a client pool then keeps the
    socket and may send its next request into the closed connection, which looks like a reset.
    """

    def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return start_response(status, [*headers, ("Connection", "close")], exc_info)

    return start


class FrontDoor:
    """Runs before Flask on every request (see the module docstring)."""

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
            start_response = saying_close(start_response)
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
