"""The target defends its own sockets: timeouts, size limits and malformed HTTP (issue 10, finding 4).

gevent's pywsgi waits forever for a request line, its headers and its body, so a client that sends nothing
(or a byte every few seconds: slowloris) holds one of the `max_sockets` slots for good; 256 of them take
the server down. `GuardedHandler` bounds every stage of reading a request and answers what it cannot read:

- idle: a connection must start a request (new, or kept alive after an answer) within `idle_timeout_s`,
  else it is closed without a word (Node's http.Server keepAliveTimeout, 5 s);
- headers: once the first byte is in, the request line, headers and body must all arrive within
  `header_timeout_s`, else `408` and close (nginx client_header_timeout, Node's headersTimeout);
- sizes: request line 8 KiB (`414`), headers 16 KiB or 100 lines (`431`), body 64 KiB (`413`);
- malformed HTTP (TLS hello, HTTP/0.9, bad chunk sizes, a bad Content-Length) is a `400` and a close;
- under pressure, when every slot is taken, connections that have been waiting for a request for more
  than PRESSURE_GRACE_S are closed first (`408` if a request had begun), as nginx drains idle keep-alive
  connections when it runs out: a request that is being worked on is never dropped for a waiting one.

Every one of these ends is counted by reason in `/stats` `dropped_total`. The body is read here, up front
and bounded, so the app never blocks on a client's socket. gunicorn uses its own parser and limits.
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from io import BytesIO
from typing import Any

import gevent
from gevent.pool import Pool
from gevent.pywsgi import MAX_REQUEST_LINE, Input, WSGIHandler

from target_server.guard import MAX_BODY_BYTES

SOCKET_KEY = "hammerlab.socket"  # where TargetHandler (server.py) puts the client's socket in the environ
SOCKET_KEYS = (SOCKET_KEY, "gunicorn.socket")


def client_socket(environ: dict[str, Any]) -> Any | None:
    """The socket under a request: ours (pywsgi) or gunicorn's; None under Flask's test client."""
    return next((environ[key] for key in SOCKET_KEYS if key in environ), None)


def os_socket(environ: dict[str, Any]) -> Any | None:
    """The OS socket under gevent's wrapper, to peek at without gevent's wait (kernel queue, hung up)."""
    sock = client_socket(environ)
    return getattr(sock, "_sock", sock)


MAX_HEADER_BYTES = 16 * 1024
MAX_HEADER_LINES = 100
PRESSURE_GRACE_S = 1.0
# After an error answer, read and discard what the client is still sending for a moment, so that closing
# does not reset the connection before the client has read the answer (nginx's lingering close).
LINGER_S = 0.5
LINGER_BYTES = 256 * 1024
SWEEP_INTERVAL_S = 0.25
# A request starts with a method token; methods are upper-case letters (RFC 9110 §9). Anything else
# (a TLS ClientHello starts with 0x16) is not HTTP and is answered at once.
METHOD_START = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
DIGITS = re.compile(r"[0-9]+", re.ASCII)


@dataclass(frozen=True)
class ConnectionLimits:
    """How long a connection may wait before and while sending a request (see the module docstring)."""

    idle_timeout_s: float = 5.0
    header_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        for name in ("idle_timeout_s", "header_timeout_s"):
            if not 0 < getattr(self, name) <= 3600:
                raise ValueError(f"{name} must be > 0 and <= 3600, got {getattr(self, name)!r}")


class Refused(ValueError):
    """A request the server will not read further: answered with `status` and closed."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class Deadline(ValueError):
    """Raised in a handler whose request did not arrive within header_timeout_s."""


class Evicted(ValueError):
    """Raised in a waiting handler to free its slot for a connection in the backlog."""


def error_bytes(status: int, message: str) -> bytes:
    """A complete `Connection: close` response with a one-line JSON error."""
    body = ('{"error": "' + message.replace("\\", "\\\\").replace('"', '\\"') + '"}').encode()
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: application/json\r\n"
        f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


class ConnectionGuard:
    """The server's view of connections that are waiting for a request, and the pressure sweeper."""

    def __init__(
        self, limits: ConnectionLimits, count_drop: Callable[[str], None], pool: Pool | None
    ) -> None:
        self.limits = limits
        self.count_drop = count_drop
        self.pool = pool
        self.waiting: dict[GuardedHandler, float] = {}
        self._sweeper: gevent.Greenlet | None = None

    def start(self) -> None:
        if self.pool is not None and self._sweeper is None:
            self._sweeper = gevent.spawn(self._sweep_forever)

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.kill(block=False)
            self._sweeper = None

    def _sweep_forever(self) -> None:
        while True:
            gevent.sleep(SWEEP_INTERVAL_S)
            self.sweep(time.monotonic())

    def sweep(self, now: float) -> int:
        """When every slot is taken, evict the connections that have waited longer than the grace."""
        if self.pool is None or not self.pool.full():
            return 0
        stale = [h for h, since in self.waiting.items() if now - since > PRESSURE_GRACE_S]
        loop = gevent.get_hub().loop
        for handler in stale:
            loop.run_callback(self._evict, handler)
        return len(stale)

    def _evict(self, handler: GuardedHandler) -> None:
        # Runs in the hub: a handler still registered is blocked in a read, so the exception lands there.
        if handler in self.waiting and handler.greenlet is not None and not handler.greenlet.dead:
            handler.greenlet.throw(Evicted("evicted"))


class GuardedHandler(WSGIHandler):
    """pywsgi's handler with bounded reads (see the module docstring). The server needs a `.guard`."""

    greenlet: Any = None
    _deadline: gevent.Timeout | None = None
    _body: bytes | None = None

    @property
    def guard(self) -> ConnectionGuard:
        return self.server.guard

    def handle(self) -> None:
        self.greenlet = gevent.getcurrent()
        try:
            super().handle()
        except OSError:
            pass  # the client went away while being answered; pywsgi has closed the socket
        finally:
            self._stop_waiting()

    # -- waiting for a request --------------------------------------------------------------------------

    def read_requestline(self) -> str:
        limits = self.guard.limits
        self.guard.waiting[self] = time.monotonic()
        self._body = None
        self.socket.settimeout(None)  # the idle wait has its own timeout below
        first: bytes | None = None
        try:
            with gevent.Timeout(limits.idle_timeout_s, False):
                first = self.rfile.peek(1)[:1]
        except Evicted:
            return self._drop("evicted")
        except OSError:
            return self._drop(None)
        if first is None:
            return self._drop("idle_timeout")
        if not first:
            return self._drop(None)  # the client closed the connection
        # From the first byte on, the whole request has header_timeout_s; every send and receive too.
        self.socket.settimeout(limits.header_timeout_s)
        if first[0] not in METHOD_START:
            return self._refuse(Refused(400, "malformed", "not an HTTP/1.x request"))
        self._deadline = gevent.Timeout.start_new(limits.header_timeout_s, Deadline("deadline"))
        try:
            line = self.rfile.readline(MAX_REQUEST_LINE)
        except (Deadline, Evicted) as error:
            return self._refuse(self._too_slow(error))
        except OSError:
            return self._drop(None)
        if len(line) >= MAX_REQUEST_LINE:
            self._stop_waiting()
            self.guard.count_drop("too_large")
            return line.decode("latin-1")  # pywsgi answers 414 and closes
        if not line.endswith(b"\n"):
            return self._drop(None)  # closed in the middle of the request line
        return line.decode("latin-1")

    def read_request(self, raw_requestline: str) -> bool:
        """Parse the request line and headers (bounded), then read the whole body up front (bounded)."""
        try:
            words = raw_requestline.split()
            if len(words) != 3 or words[2] not in ("HTTP/1.0", "HTTP/1.1"):
                raise Refused(400, "malformed", "the request line must be METHOD PATH HTTP/1.x")
            head = self._read_head()
            socket_file, self.rfile = self.rfile, BytesIO(head)
            try:
                super().read_request(raw_requestline)
            finally:
                self.rfile = socket_file
            self._body = self._read_body()
            return True
        except (Deadline, Evicted) as error:
            raise self._too_slow(error) from None
        finally:
            self._stop_waiting()

    def _read_head(self) -> bytes:
        head = bytearray()
        lines = 0
        while True:
            line = self.rfile.readline(MAX_HEADER_BYTES + 1 - len(head))
            head += line
            lines += 1
            if len(head) > MAX_HEADER_BYTES or lines > MAX_HEADER_LINES + 1:
                raise Refused(
                    431,
                    "too_large",
                    f"request headers over {MAX_HEADER_BYTES} bytes or {MAX_HEADER_LINES} lines",
                )
            if line in (b"\r\n", b"\n"):
                return bytes(head)
            if not line.endswith(b"\n"):
                raise Refused(400, "malformed", "the connection closed inside the headers")

    def _read_body(self) -> bytes | None:
        headers = self.headers
        if len(headers.get_all("content-length") or ()) > 1:
            raise Refused(400, "malformed", "more than one Content-Length")
        declared = headers.get("content-length")
        if declared is not None and not DIGITS.fullmatch(declared.strip()):  # int() took +5, 5_0, full-width
            raise Refused(400, "malformed", "Content-Length must be ASCII digits")
        coding = headers.get("transfer-encoding")
        chunked = coding is not None and coding.strip().lower() == "chunked"
        if coding is not None and not chunked:
            raise Refused(400, "malformed", "the only Transfer-Encoding accepted is chunked")
        if not chunked and not self.content_length:
            return None
        if (self.content_length or 0) > MAX_BODY_BYTES:
            raise Refused(413, "too_large", f"body over {MAX_BODY_BYTES} bytes")
        expects = headers.get("expect", "").lower() == "100-continue"
        sock = self.socket if expects else None
        reader = Input(self.rfile, self.content_length, socket=sock, chunked_input=chunked)
        try:
            data = reader.read(MAX_BODY_BYTES + 1)
        except (OSError, ValueError, OverflowError) as error:  # short body, bad chunk size, EOF
            if isinstance(error, Deadline | Evicted):
                raise
            raise Refused(400, "malformed", f"the body cannot be read ({str(error)[:80]})") from None
        if len(data) > MAX_BODY_BYTES:
            raise Refused(413, "too_large", f"body over {MAX_BODY_BYTES} bytes")
        return data

    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        if self._body is not None:
            self.wsgi_input = Input(BytesIO(self._body), len(self._body))
            environ["wsgi.input"] = self.wsgi_input
            environ["CONTENT_LENGTH"] = str(len(self._body))
            environ.pop("HTTP_TRANSFER_ENCODING", None)
        return environ

    # -- ending a connection ------------------------------------------------------------------------------

    def _handle_client_error(self, ex: Exception) -> tuple[str, bytes]:
        """Anything read_request raised: one JSON line, counted, and the connection closes (no traceback)."""
        refused = ex if isinstance(ex, Refused) else Refused(400, "malformed", "malformed request")
        self._refuse(refused)
        return str(refused.status), b""  # already sent; pywsgi sends nothing more and closes

    def _too_slow(self, error: Exception) -> Refused:
        if isinstance(error, Evicted):
            return Refused(408, "evicted", "every connection slot is taken and this request was too slow")
        timeout = self.guard.limits.header_timeout_s
        return Refused(408, "header_timeout", f"the request did not arrive within {timeout:g} s")

    def _refuse(self, refused: Refused) -> str:
        """Answer with `refused`, then close without resetting what the client is still sending."""
        self._stop_waiting()
        self.guard.count_drop(refused.reason)
        with contextlib.suppress(OSError, gevent.Timeout):
            self.socket.sendall(error_bytes(refused.status, str(refused)))
            self.socket.shutdown(socket.SHUT_WR)
            with gevent.Timeout(LINGER_S, False):
                drained = 0
                while drained < LINGER_BYTES and (chunk := self.socket.recv(65536)):
                    drained += len(chunk)
        return ""

    def _drop(self, reason: str | None) -> str:
        self._stop_waiting()
        if reason is not None:
            self.guard.count_drop(reason)
        return ""

    def _stop_waiting(self) -> None:
        if self._deadline is not None:
            self._deadline.close()
            self._deadline = None
        self.guard.waiting.pop(self, None)
