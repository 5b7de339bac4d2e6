"""Locust workers on other "hosts" (tests/netns_hosts.py), run inside a private world by
tests/test_distributed_hosts.py. Not a test module. Prints one JSON object on its last line.

  guard    a master on A started with --allow-remote sends its workers a host off their loopback
           (10.200.0.1, A's address): the worker on B has no --allow-remote of its own and must refuse
           (exit 2, not one request from B); the worker on C has it and loads the host.
  compare  `python -m comparison --external-workers 2` on A, each worker on B and C run in a loop (a
           worker exits when its master quits: the loop brings it back for the next class).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.netns_hosts import HOST_A, hosts  # noqa: E402

PY = sys.executable


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST_A, 0))
        return int(probe.getsockname()[1])


class PeerCountingServer(ThreadingHTTPServer):
    """Answers 200 to everything on A; counts requests by the peer's address."""

    daemon_threads = True

    def __init__(self) -> None:
        self.by_peer: Counter[str] = Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.by_peer[self.client_address[0]] += 1
                self.send_response(200)
                self.send_header("Content-Length", "3")
                self.end_headers()
                self.wfile.write(b"ok\n")

            def log_message(self, *_: object) -> None:
                pass

        super().__init__((HOST_A, 0), Handler)
        self.url = f"http://{HOST_A}:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


def worker_command(port: int, *extra: str) -> list[str]:
    """What a user types on each worker host (docs/distributed.md)."""
    return [PY, "-m", "locust", "-f", "locustfiles", "--worker", "--master-host", HOST_A,
            "--master-port", str(port), *extra]  # fmt: skip


def guard() -> dict[str, object]:
    server = PeerCountingServer()
    port = free_port()
    with hosts("B", "C") as net:
        refusing = net["B"].popen(
            worker_command(port), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        allowed = net["C"].popen(
            worker_command(port, "--allow-remote"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        master = subprocess.run(
            [PY, "-m", "locust", "-f", "locustfiles", "--master", "--headless", "--expect-workers", "2",
             "--expect-workers-max-wait", "30", "--master-bind-host", HOST_A, "--master-bind-port", str(port),
             "-u", "2", "-r", "2", "-t", "4s", "--host", server.url, "--allow-remote", "--launch-rate", "10",
             "--only-summary", "HammerClient"],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        refused_out = refusing.communicate(timeout=20)[0]
        allowed_out = allowed.communicate(timeout=20)[0]
        return {
            "master_rc": master.returncode,
            "refusing_rc": refusing.returncode,
            "refusing_lines": [line for line in refused_out.splitlines() if "hammerlab: error:" in line][:1],
            "allowed_rc": allowed.returncode,
            "allowed_errors": [line for line in allowed_out.splitlines() if "error" in line.lower()][:3],
            "from_B": server.by_peer[net["B"].address],
            "from_C": server.by_peer[net["C"].address],
        }


def compare(results: Path) -> dict[str, object]:
    target_port, master_port = free_port(), free_port()
    target = subprocess.Popen(
        [PY, "-m", "target_server", "--host", HOST_A, "--port", str(target_port), "--quiet"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    loop = 'while :; do "$@"; sleep 0.2; done'  # a worker exits when its master quits: start it again
    try:
        with hosts("B", "C") as net:
            for name in ("B", "C"):
                command = worker_command(master_port, "--allow-remote")
                net[name].popen(["sh", "-c", loop, "_", *command], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
            started = time.monotonic()
            result = subprocess.run(
                [PY, "-m", "comparison", "--external-workers", "2", "--master-bind-host", HOST_A,
                 "--master-bind-port", str(master_port), "--host", f"http://{HOST_A}:{target_port}",
                 "--allow-remote", "--scenario", "healthy", "--clients", "HammerClient,ThrottledClient",
                 "--capacity", "60", "--duration", "5", "--drain-s", "1", "--results-dir", str(results)],
                cwd=ROOT, capture_output=True, text=True, timeout=150,
            )  # fmt: skip
            return {
                "rc": result.returncode,
                "stdout": result.stdout[-6000:],
                "stderr": result.stderr[-2000:],
                "seconds": round(time.monotonic() - started, 1),
                "hosts": {name: host.address for name, host in net.items()},
                "run_dir": str((results / "latest").resolve()),
            }
    finally:
        target.terminate()
        target.wait(timeout=10)


def main() -> None:
    what = sys.argv[1]
    if what == "guard":
        print(json.dumps(guard()))
        return
    keep = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tempfile.mkdtemp())
    print(json.dumps(compare(keep)))


if __name__ == "__main__":
    main()
