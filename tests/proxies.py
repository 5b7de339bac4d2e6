"""nginx and HAProxy in front of a target, on loopback, for the "any upstream" tests.

Each runs in the foreground as a child process of the test, with its config, pid file and logs in a
temporary folder: never as a system service. Both drop `X-Server-Lag-Ms`, so a client behind them sees
latency and errors alone. `make test` installs the Debian packages when the binaries are missing.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

NGINX = Path("/usr/sbin/nginx")
HAPROXY = Path("/usr/sbin/haproxy")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-800:]
            raise RuntimeError(f"proxy exited with {proc.returncode}: {tail}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"proxy not listening on {port} after {timeout} s")


@contextlib.contextmanager
def _running(argv: list[str], port: int, log: Path) -> Iterator[str]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_listening(port, proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


@contextlib.contextmanager
def nginx(upstream: str, folder: Path) -> Iterator[str]:
    """nginx as a reverse proxy to `upstream` (a new upstream connection per request); yields its URL."""
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / "nginx.conf"
    conf.write_text(
        f"""
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass {upstream};
            proxy_hide_header X-Server-Lag-Ms;
            proxy_read_timeout 30s;
        }}
    }}
}}
"""
    )
    argv = [str(NGINX), "-p", str(folder), "-c", str(conf), "-g", "daemon off;"]
    with _running(argv, port, folder / "nginx.out") as url:
        yield url


@contextlib.contextmanager
def haproxy(upstream_port: int, folder: Path, maxconn: int, queue_timeout_s: float = 1.0) -> Iterator[str]:
    """HAProxy with `maxconn` on its one server: the rest wait in HAProxy's queue, and after
    `queue_timeout_s` get a 503 (a slow one: it cost the client the wait). Yields its URL."""
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / "haproxy.cfg"
    conf.write_text(
        f"""
global
    maxconn 2000
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout queue {int(queue_timeout_s * 1000)}ms
frontend front
    bind 127.0.0.1:{port}
    http-response del-header X-Server-Lag-Ms
    default_backend back
backend back
    server target 127.0.0.1:{upstream_port} maxconn {maxconn}
"""
    )
    argv = [str(HAPROXY), "-db", "-f", str(conf)]
    with _running(argv, port, folder / "haproxy.out") as url:
        yield url
