"""What busy tracking and Flask cost: /ping throughput of the target server vs a bare gevent pywsgi server.

Both servers run as subprocesses on one core (when the machine has two or more), the client on another.
The client is the same for both: N greenlets, each with its own keep-alive geventhttpclient connection,
sending a bounded number of GET /ping requests (and stopping at a time limit). Rounds alternate between
the two servers and the median of each is compared. The ratio target/bare is what the issue asks for
(aim: >= 0.8). Both servers set TCP_NODELAY, so neither pays Nagle's 40 ms.

    .venv/bin/python benchmarks/server_overhead.py [--rounds 5] [--requests 8000] [--check]
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gevent
from geventhttpclient import HTTPClient

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 10.0
NO_WORK = "/doWork?task_delay_ms=0&sync_work_ms=0"


def serve_bare() -> None:
    """The baseline: gevent's pywsgi with a WSGI hello-world, TCP_NODELAY, no access log."""
    from gevent.pywsgi import WSGIServer

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "4")])
        return [b"pong"]

    class NoDelayServer(WSGIServer):
        def handle(self, sock, address):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().handle(sock, address)

    server = NoDelayServer(("127.0.0.1", 0), app, log=None, environ={"SERVER_NAME": "127.0.0.1"})
    server.init_socket()
    print(f"listening on http://127.0.0.1:{server.server_port}", file=sys.stderr, flush=True)
    server.serve_forever()


class Server:
    """A server subprocess whose port is read from its 'listening on' line."""

    def __init__(self, name: str, argv: list[str], core: int | None) -> None:
        self.name = name
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=self.log)
        if core is not None:
            os.sched_setaffinity(self.proc.pid, {core})
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", Path(self.log.name).read_text())
            if match:
                self.port = int(match.group(1))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise SystemExit(f"{name} server did not start: {Path(self.log.name).read_text().strip()[-300:]}")

    def cpu_seconds(self) -> float:
        """User + system CPU the server has used so far (Linux /proc; 0 elsewhere)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        Path(self.log.name).unlink(missing_ok=True)


def measure(port: int, path: str, connections: int, requests: int, time_limit_s: float) -> tuple[float, int]:
    """Requests per second, and requests done, for keep-alive GETs of `path` over `connections` greenlets."""
    per_connection = max(1, requests // connections)
    deadline = time.monotonic() + time_limit_s
    done = [0]

    def worker() -> None:
        client = HTTPClient("127.0.0.1", port, concurrency=1, connection_timeout=5, network_timeout=5)
        try:
            for _ in range(per_connection):
                if time.monotonic() > deadline:
                    return
                response = client.get(path)
                response.read()
                if response.status_code != 200:
                    raise RuntimeError(f"{path} answered {response.status_code}")
                done[0] += 1
        finally:
            client.close()

    for greenlet in [gevent.spawn(worker) for _ in range(connections)]:  # warm-up: connect and a first call
        greenlet.join()
    done[0] = 0
    deadline = time.monotonic() + time_limit_s
    start = time.perf_counter()
    gevent.joinall([gevent.spawn(worker) for _ in range(connections)], raise_error=True)
    return done[0] / (time.perf_counter() - start), done[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per server (alternating)")
    parser.add_argument("--requests", type=int, default=8000, help="requests per round")
    parser.add_argument("--connections", type=int, default=8, help="keep-alive connections (greenlets)")
    parser.add_argument("--time-limit", type=float, default=10.0, help="seconds per round at most")
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin server and client to separate cores"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when the ratio is below 0.8")
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare:
        serve_bare()
        return 0
    if not (1 <= args.rounds <= 20 and 100 <= args.requests <= 200_000 and 1 <= args.connections <= 256):
        parser.error("--rounds must be 1..20, --requests 100..200000, --connections 1..256")

    cores = sorted(os.sched_getaffinity(0))
    pin = not args.no_pin and len(cores) >= 2
    server_core = cores[0] if pin else None
    if pin:
        os.sched_setaffinity(0, set(cores[1:]))
    python = sys.executable
    servers = [
        Server("target", [python, "-m", "target_server", "--port", "0", "--quiet"], server_core),
        Server("bare", [python, str(Path(__file__).resolve()), "--bare"], server_core),
    ]
    target, bare = servers
    # (label, server, path): /ping on both, and a Flask-routed /doWork that does no work, for the record.
    runs = [
        ("target /ping", target, "/ping"),
        ("bare /ping", bare, "/ping"),
        ("target /doWork", target, NO_WORK),
    ]
    results: dict[str, list[float]] = {label: [] for label, _, _ in runs}
    cpu_per_request: dict[str, list[float]] = {label: [] for label, _, _ in runs}
    try:
        for round_number in range(1, args.rounds + 1):
            order = runs if round_number % 2 else [runs[1], runs[0], runs[2]]  # alternate to cancel drift
            for label, server, path in order:
                cpu_before = server.cpu_seconds()
                rate, done = measure(server.port, path, args.connections, args.requests, args.time_limit)
                cpu_us = (server.cpu_seconds() - cpu_before) / max(1, done + args.connections) * 1e6
                results[label].append(rate)
                cpu_per_request[label].append(cpu_us)
                print(
                    f"round {round_number}: {label:<15} {rate:8.0f} req/s  {cpu_us:6.0f} us CPU/request",
                    flush=True,
                )
    finally:
        for server in servers:
            server.stop()
    paired = [t / b for t, b in zip(results["target /ping"], results["bare /ping"], strict=True)]
    ratio = statistics.median(paired)
    medians = {label: statistics.median(rates) for label, rates in results.items()}
    print(
        f"/ping median: target {medians['target /ping']:.0f} req/s, "
        f"bare pywsgi {medians['bare /ping']:.0f} req/s; "
        f"ratio {ratio:.2f} (median of per-round ratios; aim >= 0.80)"
    )
    cpu = {label: statistics.median(values) for label, values in cpu_per_request.items()}
    if cpu["target /ping"] > 0:
        print(
            f"server CPU per /ping: target {cpu['target /ping']:.0f} us, bare {cpu['bare /ping']:.0f} us; "
            f"bare/target {cpu['bare /ping'] / cpu['target /ping']:.2f} (less sensitive to a noisy machine)"
        )
    print(
        f"Flask path, {NO_WORK}: {medians['target /doWork']:.0f} req/s, "
        f"{medians['target /doWork'] / medians['bare /ping']:.2f} of bare /ping "
        f"({args.connections} keep-alive connections, {'pinned' if pin else 'unpinned'}, "
        f"{args.rounds} rounds)"
    )
    return 1 if args.check and ratio < 0.8 else 0


if __name__ == "__main__":
    sys.exit(main())
