"""The documented multi-process form: `gunicorn -k gevent -w 2 'target_server.app:create_app()'`.

/stats must add up every worker, and /admin must reach every worker, whichever one answers.

The workers share their numbers through files rewritten every PUBLISH_INTERVAL_S, so every check waits for
the sums it expects (with a deadline) instead of sleeping: on a busy machine a worker boots, publishes and
adopts an admin change seconds late, not 0.2 s.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import gevent
import pytest

from target_server.cluster import CONTROL_FILE, WORKER_PREFIX
from tests.conftest import ROOT
from tests.test_target_load import fetch

pytestmark = pytest.mark.slow
LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")
WAIT_S = 30.0  # generous: a starved worker takes seconds to boot or to publish, never this long


class Gunicorn:
    def __init__(self, workers: int, env: dict[str, str]) -> None:
        gunicorn = str(Path(sys.executable).with_name("gunicorn"))
        argv = [
            gunicorn,
            "-k",
            "gevent",
            "-w",
            str(workers),
            "-b",
            "127.0.0.1:0",
            "target_server.app:create_app()",
        ]
        handle, name = tempfile.mkstemp(prefix="gunicorn-", suffix=".log")
        self.log = Path(name)
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("TARGET_")} | env
        with os.fdopen(handle, "wb") as log:
            self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=child_env)
        self.port = 0
        deadline = time.monotonic() + WAIT_S
        while not self.port:
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "gunicorn did not start: " + self.log.read_text()
            match = LISTENING.search(self.log.read_text())
            self.port = int(match.group(1)) if match else 0
            time.sleep(0.1)
        self.url = f"http://127.0.0.1:{self.port}"
        self.shared = Path(tempfile.gettempdir()) / f"hammerlab-target-{self.proc.pid}"

    def stats(self) -> dict:
        with urllib.request.urlopen(self.url + "/stats", timeout=WAIT_S) as response:
            return json.loads(response.read())

    def admin(self, method: str, path: str, body: object = None) -> int:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + "/admin" + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")  # /admin refuses other POSTs (415)
        with urllib.request.urlopen(request, timeout=WAIT_S) as response:
            return response.status

    def wait_adopted(self) -> None:
        """Until every worker has published twice since the last admin change: the publish loop reads
        the control file before each publish, so the second one follows a read of the change."""
        control = (self.shared / CONTROL_FILE).stat().st_mtime_ns
        seen: dict[str, set[int]] = {}
        deadline = time.monotonic() + WAIT_S
        while True:
            for path in self.shared.glob(WORKER_PREFIX + "*.json"):
                try:
                    published = path.stat().st_mtime_ns
                except FileNotFoundError:
                    continue  # being replaced right now
                if published > control:
                    seen.setdefault(path.name, set()).add(published)
            if len(seen) == 2 and all(len(times) >= 2 for times in seen.values()):
                return
            assert time.monotonic() < deadline, f"the workers never adopted the change: {seen}"
            time.sleep(0.05)

    def wait_stats(self, predicate, timeout: float = WAIT_S) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            try:
                stats = self.stats()
                if predicate(stats):
                    return stats
            except (OSError, urllib.error.URLError):
                stats = {}
            assert time.monotonic() < deadline, f"condition never held; last /stats: {stats}"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        shutil.rmtree(self.shared, ignore_errors=True)
        self.log.unlink(missing_ok=True)


@pytest.fixture
def gunicorn():
    server = Gunicorn(workers=2, env={"TARGET_QUIET": "1"})
    try:
        # gunicorn listens before its workers have booted; every test starts with both serving
        server.wait_stats(lambda s: s["workers"]["count"] == 2)
        yield server
    finally:
        server.stop()


def burst(port: int, count: int, path: str) -> list[int | None]:
    """`count` concurrent requests on fresh connections, so that both workers accept some."""
    greenlets = [gevent.spawn(fetch, port, path, time.monotonic(), WAIT_S, WAIT_S) for _ in range(count)]
    gevent.joinall(greenlets, timeout=2 * WAIT_S)
    return [g.value.status if g.value else None for g in greenlets]


def test_stats_add_up_every_worker(gunicorn):
    stats = gunicorn.wait_stats(lambda s: s["workers"]["count"] == 2)
    assert stats["workers"]["mode"] == "gunicorn" and len(stats["workers"]["pids"]) == 2
    assert stats["status_port"] is None  # no status series under gunicorn: the sampler asks /stats
    sent = 0
    for _ in range(10):  # until the kernel has handed connections to both workers
        statuses = burst(gunicorn.port, 20, "/doWork?task_delay_ms=5&sync_work_ms=5")
        assert statuses == [200] * 20
        sent += 20
        # a worker's published numbers can trail the answers it gave: wait until they are all in
        stats = gunicorn.wait_stats(lambda s, sent=sent: s["requests_total"] == s["completed_total"] == sent)
        if all(n > 0 for n in stats["workers"]["requests_total"].values()):
            break
    assert stats["completed_total"] == sent
    # by criticality too (no header: critical), summed over the workers like every total
    assert stats["by_criticality_total"]["critical"] == {"requests": sent, "completed": sent, "rejected": 0}
    per_worker = stats["workers"]["requests_total"]
    assert len(per_worker) == 2 and all(n > 0 for n in per_worker.values()), per_worker
    # /metrics' duration histogram adds up the workers too, whichever answers
    pattern = re.compile(r'^target_request_duration_seconds_count\{outcome="completed"\} (\S+)$', re.M)
    deadline = time.monotonic() + WAIT_S
    while True:
        with urllib.request.urlopen(gunicorn.url + "/metrics", timeout=WAIT_S) as response:
            counted = float(pattern.search(response.read().decode()).group(1))
        if counted == sent or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert counted == sent


def test_sockets_are_counted_from_requests_under_gunicorn(gunicorn):
    # gunicorn accepts the connections itself, so a connection counts once it has sent a request.
    connections = [http.client.HTTPConnection("127.0.0.1", gunicorn.port, timeout=WAIT_S) for _ in range(3)]
    try:
        for connection in connections:
            connection.request("GET", "/ping")
            assert connection.getresponse().read() == b"pong"
        gunicorn.wait_stats(lambda s: s["sockets"] == 4)  # three idle keep-alive ones and this one
    finally:
        for connection in connections:
            connection.close()
    stats = gunicorn.wait_stats(lambda s: s["sockets"] == 1)
    assert stats["sockets_accepted_total"] - stats["sockets_closed_total"] == 1


def test_admin_reaches_every_worker(gunicorn):
    gunicorn.wait_stats(lambda s: s["workers"]["count"] == 2)
    assert gunicorn.admin("POST", "/faults", {"kind": "error", "status": 502}) == 201
    gunicorn.wait_adopted()
    assert burst(gunicorn.port, 30, "/doWork?task_delay_ms=5&sync_work_ms=5") == [502] * 30
    assert gunicorn.admin("DELETE", "/faults") == 200
    assert gunicorn.admin("POST", "/config", {"sync_work_ms": 1}) == 200
    gunicorn.wait_adopted()
    assert burst(gunicorn.port, 30, "/doWork?task_delay_ms=5") == [200] * 30
    stats = gunicorn.wait_stats(lambda s: s["requests_total"] == 60)
    assert stats["errors_total"] == 30 and stats["faulted_total"]["error"] == 30
    assert stats["config"]["sync_work_ms"] == 1.0
    assert gunicorn.admin("POST", "/reset") == 200
    stats = gunicorn.stats()
    assert stats["requests_total"] == 0 and stats["reset_count"] == 1
