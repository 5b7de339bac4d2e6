"""How long the target takes to come back after an overload stops (issue 10, finding 6).

Starts a target server (`python -m target_server --port 0 --quiet`, plus any flags after `--`), overloads
`/doWork` for a while with `wrk -c 1000` (or, without wrk, a bounded flood of raw sockets that send
`GET /doWork` and hang up), and from the moment the load stops polls `/stats` every 50 ms on a fresh
connection. It prints when `/stats` first answered and when the smoothed lag first fell under the
shedding threshold (70 ms, toobusy's maxLag).

    .venv/bin/python benchmarks/overload_recovery.py [--runs 2] [--seconds 20] [--connections 1000]
    .venv/bin/python benchmarks/overload_recovery.py --raw -- --max-sockets 512
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")
THRESHOLD_MS = 70.0
POLL_S = 0.05
GIVE_UP_S = 30.0


def start_target(extra: list[str]) -> tuple[subprocess.Popen[bytes], int, Path]:
    log = Path(tempfile.mkstemp(prefix="recovery-target-", suffix=".log")[1])
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "target_server", "--port", "0", "--quiet", *extra],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        match = LISTENING.search(log.read_text(errors="replace"))
        if match:
            return proc, int(match.group(1)), log
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"target did not start: {log.read_text(errors='replace')[-300:]}")


def stats(port: int, timeout: float = 0.5) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=timeout) as response:
            return json.loads(response.read())
    except OSError:
        return None


def overload_wrk(port: int, connections: int, seconds: float) -> None:
    subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{int(seconds)}s",
            "--timeout",
            "2s",
            f"http://127.0.0.1:{port}/doWork",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=seconds + 30,
        check=False,
    )


def overload_raw(port: int, connections: int, seconds: float) -> None:
    """Keep up to `connections` sockets that each send GET /doWork, wait up to 1 s, and hang up."""
    import gevent
    import gevent.socket

    def client(stop_at: float) -> None:
        while time.monotonic() < stop_at:
            try:
                with gevent.socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
                    sock.settimeout(1.0)
                    sock.sendall(b"GET /doWork HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                    sock.recv(1024)
            except OSError:
                pass

    stop_at = time.monotonic() + seconds
    gevent.joinall([gevent.spawn(client, stop_at) for _ in range(connections)], timeout=seconds + 5)


def one_run(
    port: int, connections: int, seconds: float, raw: bool
) -> tuple[float | None, float | None, float]:
    (overload_raw if raw else overload_wrk)(port, connections, seconds)
    ended = time.monotonic()
    first_answer = under = None
    first_lag = float("nan")
    while time.monotonic() - ended < GIVE_UP_S:
        data = stats(port)
        now = time.monotonic() - ended
        if data is not None:
            if first_answer is None:
                first_answer, first_lag = now, data["lag_ms"]
            if data["lag_ms"] < THRESHOLD_MS:
                under = now
                break
        time.sleep(POLL_S)
    return first_answer, under, first_lag


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--raw", action="store_true", help="raw-socket flood even if wrk is installed")
    parser.add_argument("target_flags", nargs="*", help="flags for the target (after --)")
    args = parser.parse_args()
    raw = args.raw or shutil.which("wrk") is None
    for run in range(1, args.runs + 1):
        proc, port, log = start_target(args.target_flags)
        try:
            first, under, first_lag = one_run(port, args.connections, args.seconds, raw)
            final = stats(port, timeout=5) or {}
            fmt = lambda v: "never" if v is None else f"{v:.2f} s"  # noqa: E731
            print(
                f"run {run}: {'raw flood' if raw else 'wrk'} -c {args.connections} -d {args.seconds:g}s; "
                f"after it stopped, /stats answered at {fmt(first)} (lag {first_lag:.0f} ms), "
                f"lag < {THRESHOLD_MS:g} ms at {fmt(under)}; "
                f"completed {final.get('completed_total')}, abandoned {final.get('abandoned_total', 'n/a')}",
                flush=True,
            )
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            log.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
