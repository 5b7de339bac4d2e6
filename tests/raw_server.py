"""A tiny HTTP server on a raw socket, for the ways a connection can end that a real server rarely shows on
purpose: a reset before any response byte, a reset or a close halfway through the body, a bare 429.

Not a test module; tests import it. It runs in the test's own process on gevent (the suite is
monkey-patched), listens on a free loopback port, and records every request it read, by method:

    with RawServer("half-then-reset") as server:
        transport.send(Call("POST", "/doWork", ...))
        assert server.methods == ["POST"]
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable

import gevent
from gevent.server import StreamServer

HALF_BODY = b'{"result": "do'
CLAIMED_LENGTH = 64
READ_HEAD_S = 0.05


def _read_request(conn: socket.socket) -> tuple[str, bytes] | None:
    """(method, body) of one request, or None if the peer closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return lines[0].split(" ", 1)[0], body


def _reset(conn: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def _head(status: str, length: int, extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n"
        f"{extra}Connection: close\r\n\r\n"
    ).encode("latin-1")


def _half_then_reset(conn: socket.socket) -> None:
    conn.sendall(_head("200 OK", CLAIMED_LENGTH) + HALF_BODY)
    # Let the client read the head first: a RST makes the kernel drop data the client has not read yet.
    gevent.sleep(READ_HEAD_S)
    _reset(conn)


def _half_then_close(conn: socket.socket) -> None:
    conn.sendall(_head("200 OK", CLAIMED_LENGTH) + HALF_BODY)
    conn.close()


def _too_many(conn: socket.socket) -> None:
    body = b'{"error": "too many requests"}'
    conn.sendall(_head("429 Too Many Requests", len(body), "Retry-After: 0\r\n") + body)
    conn.close()


BEHAVIOURS: dict[str, Callable[[socket.socket], None]] = {
    "reset-before-response": _reset,
    "half-then-reset": _half_then_reset,
    "half-then-close": _half_then_close,
    "429": _too_many,
}


class RawServer:
    """Answers every request with one behaviour from `BEHAVIOURS`; `methods` lists the requests it read."""

    def __init__(self, behaviour: str) -> None:
        self._act = BEHAVIOURS[behaviour]
        self.methods: list[str] = []
        self._server = StreamServer(("127.0.0.1", 0), self._handle)

    def _handle(self, conn: socket.socket, _address: object) -> None:
        request = _read_request(conn)
        if request is None:
            conn.close()
            return
        self.methods.append(request[0])
        self._act(conn)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> RawServer:
        self._server.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.stop(timeout=1)
