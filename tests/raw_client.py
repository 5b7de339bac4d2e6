"""Raw bytes to a server on a fresh loopback connection, for the framing and hardening tests."""

from __future__ import annotations

import contextlib
import socket
import time


def exchange(port: int, data: bytes, wait_s: float = 4.0) -> tuple[bytes, bool, float]:
    """Send `data`; return (everything answered, whether the server closed, seconds until it did). A reset
    counts as closed; no close within `wait_s` of silence returns what came, not closed."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(data)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except TimeoutError:
            return answer, False, time.monotonic() - start
        except ConnectionResetError:
            pass
    return answer, True, time.monotonic() - start
