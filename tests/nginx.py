"""A stock nginx (Debian's package) serving static files on a free loopback port, for tests that need an
HTTP/1.1 service that is not Hammerlab's. Its config, pid and logs live in a temp folder; `daemon off`
keeps it a child of the test, which stops it. `make test` installs nginx when /usr/sbin/nginx is missing.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from pathlib import Path

NGINX = "/usr/sbin/nginx"
READY = "/?ready"  # the readiness checks' request, left out of `requests()`
CONFIG = """\
daemon off;
user root;  # its workers read a test's private temp folder (ignored when not run as root)
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format hammerlab '$request_method $request_uri $status test=$http_x_hammerlab_test '
                         'body=$content_length agent=$http_user_agent';
    access_log {root}/access.log hammerlab;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    default_type text/plain;
    server {{
        listen {address}:{port};
        root {root}/www;
        location = /accept {{ return 200 "ok\\n"; }}  # any method, any body
        location = /fail {{ return 500 "failing\\n"; }}
    }}
}}
"""


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


class Nginx:
    """nginx on `address:port`, serving `root/www`; `requests()` reads its access log."""

    def __init__(self, root: Path, address: str = "127.0.0.1", files: dict[str, str] | None = None) -> None:
        self.root = root
        (root / "www").mkdir(parents=True, exist_ok=True)
        for name, text in (files or {"index.html": "<p>hello from nginx</p>\n"}).items():
            (root / "www" / name).write_text(text)
        self.port = free_port(address)
        self.url = f"http://{address}:{self.port}"
        (root / "nginx.conf").write_text(CONFIG.format(root=root, address=address, port=self.port))
        self.process = subprocess.Popen(
            [NGINX, "-c", str(root / "nginx.conf"), "-p", str(root), "-e", str(root / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(self.url + READY, timeout=1):
                    break
            except OSError as error:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"nginx did not start: {(root / 'error.log').read_text()[-500:]}"
                    ) from error
                time.sleep(0.05)

    def requests(self) -> list[str]:
        """The access log's lines, one per request answered (`GET /x 200 test=... body=... agent=...`),
        without the readiness checks made here."""
        path = self.root / "access.log"
        lines = path.read_text().splitlines() if path.exists() else []
        return [line for line in lines if not line.startswith(f"GET {READY} ")]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
