"""Run inside a private network namespace (tests/test_guard.py starts it with `unshare -n`).

There the only interface is `lo`, with 127.0.0.1 and an extra 10.200.0.1/32 that stands for a remote
host, so even a broken guard cannot send anything off this machine (FIELD-NOTES §6). A small server on
10.200.0.1 counts every connection it accepts; the script aims Locust and the comparison at it, refused
and opted in, and prints one JSON object of what each run did. Not a test module (no `test_` prefix).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.locust_run import locust_command  # noqa: E402

REMOTE = "10.200.0.1"


class CountingServer(ThreadingHTTPServer):
    """Answers every request with `status`; counts accepted connections and requests."""

    daemon_threads = True

    def __init__(self, status: int, address: str = REMOTE) -> None:
        self.status = status
        self.accepted = 0
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                body = b"ok\n"
                self.send_response(server.status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        super().__init__((address, 0), Handler)
        self.url = f"http://{address}:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def get_request(self) -> tuple[socket.socket, object]:
        accepted = super().get_request()
        self.accepted += 1
        return accepted


def run(argv: list[str], env: dict[str, str] | None = None, timeout: float = 60) -> dict[str, object]:
    started = time.monotonic()
    result = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )
    errors = [line for line in result.stderr.splitlines() if "error" in line or "stop-loss" in line]
    return {"rc": result.returncode, "lines": errors[-3:], "seconds": round(time.monotonic() - started, 1)}


def main() -> None:
    results: dict[str, object] = {}
    quiet = {"HAMMERLAB_ALLOW_REMOTE": ""}
    with tempfile.TemporaryDirectory() as folder:
        ok, failing = CountingServer(200), CountingServer(500)
        locust = locust_command("--launch-rate", "10", "--drain-s", "1")
        comparison = [sys.executable, "-m", "comparison", "--capacity", "10", "--scenario", "healthy",
                      "--duration", "5", "--drain-s", "0", "--clients", "HammerClient",
                      "--results-dir", folder]  # fmt: skip
        results["locust_refused"] = run([*locust, "-t", "3s", "--host", ok.url, "HammerClient"], quiet)
        results["comparison_refused"] = run([*comparison, "--host", ok.url], quiet)
        results["accepted_after_refusals"] = ok.accepted
        results["comparison_opted_in"] = run([*comparison, "--host", ok.url, "--allow-remote"], quiet)
        results["reached_by_comparison"] = ok.requests
        results["locust_opted_in_by_env"] = run(
            [*locust, "-t", "30s", "--host", failing.url, "HammerClient"], {"HAMMERLAB_ALLOW_REMOTE": "1"}
        )
        results["reached_by_locust"] = failing.requests
        # --server-metrics on a remote host: refused like --host, before the sampler opens a socket
        local, metrics = CountingServer(200, "127.0.0.1"), CountingServer(200)
        scrape = ["--host", local.url, "--server-metrics", metrics.url + "/metrics"]
        results["metrics_refused"] = run([*locust, "-t", "2s", *scrape, "HammerClient"], quiet)
        results["metrics_refused_by_comparison"] = run([*comparison, *scrape], quiet)
        results["metrics_accepted_after_refusals"] = metrics.accepted
        opted_in = [*locust, "-t", "3s", *scrape, "--allow-remote", "HammerClient"]
        results["metrics_opted_in"] = run(opted_in, quiet)
        results["metrics_scraped"] = metrics.requests
    print(json.dumps(results))


if __name__ == "__main__":
    main()
