"""Serving the app with gevent's WSGIServer, with the seed's limits and without Nagle's 40 ms.

- `max_sockets` is a gevent pool: once it is full the server stops accepting, new connections wait in the
  kernel's listen queue (`backlog`), and past that their SYNs are dropped, so clients see connect timeouts.
- Every accepted socket gets TCP_NODELAY: pywsgi writes headers and body separately, and on keep-alive
  connections Nagle plus delayed ACK would add ~40 ms to each request (FIELD-NOTES §3).
- Connections are counted as they are accepted and closed, which is the seed's `sockets`.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
from gevent.pool import Pool
from gevent.pywsgi import WSGIServer

from target_server.app import create_app, state_of
from target_server.config import Config
from target_server.connections import SOCKET_KEY, ConnectionGuard, ConnectionLimits, GuardedHandler
from target_server.state import TargetState
from target_server.status_log import SERIES_PATH, StatusLog, start_status_log

STOP_TIMEOUT_S = 1.0


class StatusPortError(OSError):
    """The status series listener could not bind its port (`--status-port`)."""


class TargetHandler(GuardedHandler):
    """The guarded handler (timeouts, limits: connections.py), exposing the socket (for the reset fault
    and the hung-up check) and without an access log line."""

    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        environ[SOCKET_KEY] = self.socket
        return environ

    def log_request(self) -> None:
        pass  # the status log replaces per-request lines


class TargetWSGIServer(WSGIServer):
    handler_class = TargetHandler

    def __init__(
        self,
        address: tuple[str, int],
        app: Any,
        state: TargetState,
        limits: ConnectionLimits | None = None,
        **kwargs: Any,
    ) -> None:
        # SERVER_NAME given up front avoids a reverse DNS lookup when the socket is bound.
        super().__init__(address, app, log=None, environ={"SERVER_NAME": address[0]}, **kwargs)
        self.state = state
        self.guard = ConnectionGuard(limits or ConnectionLimits(), state.totals.count_drop, self.pool)

    def start(self) -> None:
        super().start()
        self.guard.start()

    def stop(self, timeout: float | None = None) -> None:
        self.guard.stop()
        super().stop(timeout=timeout)

    def handle(self, sock: socket.socket, address: tuple[str, int]) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.state.socket_opened()
        try:
            super().handle(sock, address)
        finally:
            self.state.socket_closed()


def log_line(message: str) -> None:
    """One line on stderr, for start-up and shutdown notices (the status log goes to stdout)."""
    print(message, file=sys.stderr, flush=True)


def build_server(config: Config) -> TargetWSGIServer:
    """A bound, not yet serving server for `config` (port 0 picks a free port)."""
    app = create_app(config)
    limits = ConnectionLimits(idle_timeout_s=config.idle_timeout_s, header_timeout_s=config.header_timeout_s)
    server = TargetWSGIServer(
        (config.host, config.port),
        app,
        state_of(app),
        limits,
        spawn=Pool(config.max_sockets),
        backlog=config.backlog,
    )
    server.init_socket()
    server.state.bound_to(server.server_port)
    return server


def serve(config: Config, on_ready: Callable[[TargetWSGIServer], None] | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then stop within about a second (hung requests are dropped)."""
    server = build_server(config)
    state = server.state
    status: StatusLog | None = None
    if config.status_port >= 0:
        try:
            status = start_status_log(state, config.host, config.status_port, config.log_interval_ms)
        except OSError as error:
            server.close()
            raise StatusPortError(error.errno, error.strerror) from None
    server.start()
    state.ensure_started()
    log_line(
        f"target_server listening on http://{config.host}:{server.server_port} (pid {os.getpid()}, "
        f"max_sockets {config.max_sockets}, backlog {config.backlog})"
    )
    if config.profile is not None:
        log_line(f"target_server {config.profile.describe()}")
    if status is not None:
        log_line(
            f"target_server status series on http://{config.host}:{status.port}{SERIES_PATH} "
            f"(recorded every {config.log_interval_ms:g} ms, off the event loop)"
        )
    if on_ready is not None:
        on_ready(server)
    stopping = gevent.event.Event()
    handlers = [gevent.signal_handler(sig, stopping.set) for sig in (signal.SIGTERM, signal.SIGINT)]
    try:
        stopping.wait()
    finally:
        for handler in handlers:
            handler.cancel()
        server.stop(timeout=STOP_TIMEOUT_S)
        if status is not None:
            status.stop()
        state.stop()
        log_line("target_server stopped")
