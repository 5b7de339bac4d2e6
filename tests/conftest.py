"""Shared fixtures: a real target server on a free loopback port.

    def test_something(start_target):
        server = start_target(sync_work_ms=20, reject_if_too_busy=True, fault=["error:rate=0.5"])
        requests.get(server.url + "/doWork", timeout=5)
        assert server.stats()["completed_total"] == 1

`start_target(**flags)` runs `python -m target_server --port 0 --quiet ...` as a subprocess, waits until
/ping answers, and kills it when the test ends. `launch_target` is the same without pytest, for
module-scoped fixtures and helpers (call `.stop()` yourself, e.g. in a `finally`).
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")
READY_TIMEOUT_S = 15.0


@dataclass
class TargetServer:
    """A running target server subprocess: `url` (no trailing slash), `port`, `proc`, and its output."""

    url: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    argv: list[str] = field(default_factory=list)

    def output(self) -> str:
        """Everything the server printed so far (status log on stdout, notices on stderr)."""
        return self.log_path.read_text(errors="replace")

    def get_json(self, path: str, timeout: float = 5.0) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
            return json.loads(response.read())

    def stats(self, timeout: float = 5.0) -> dict[str, Any]:
        """GET /stats as a dict."""
        return self.get_json("/stats", timeout)

    def admin(self, method: str, path: str, body: Any = None, timeout: float = 5.0) -> tuple[int, Any]:
        """Call /admin<path> with a JSON body; returns (status, parsed JSON) for 2xx and 4xx alike."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + "/admin" + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 5 s. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        return self.proc.returncode


def target_argv(*args: str, **flags: Any) -> list[str]:
    """Flags as keyword arguments: `sync_work_ms=20` → `--sync-work-ms 20`, `quiet=False` → `--no-quiet`,
    a list repeats the flag (`fault=["error", "slow"]`). `--port 0` and `--quiet` unless given."""
    flags.setdefault("port", 0)
    flags.setdefault("quiet", True)
    argv = [sys.executable, "-m", "target_server", *args]
    for name, value in flags.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is False:
            argv.append("--no-" + name.replace("_", "-"))
        elif isinstance(value, list | tuple):
            for item in value:
                argv += [flag, str(item)]
        else:
            argv += [flag, str(value)]
    return argv


def launch_target(*args: str, env: dict[str, str] | None = None, **flags: Any) -> TargetServer:
    """Start a target server and wait until GET /ping answers. Raises (after killing it) if it does not."""
    argv = target_argv(*args, **flags)
    handle, name = tempfile.mkstemp(prefix="target-", suffix=".log")
    log_path = Path(name)
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("TARGET_")} | (env or {})
    with os.fdopen(handle, "wb") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=child_env)
    server: TargetServer | None = None
    deadline = time.monotonic() + READY_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-500:]
                raise RuntimeError(f"target server exited with {proc.returncode}: {tail}")
            match = server is None and LISTENING.search(log_path.read_text(errors="replace"))
            if match:
                port = int(match.group(1))
                server = TargetServer(f"http://127.0.0.1:{port}", port, proc, log_path, argv)
            if server is not None:
                try:
                    with urllib.request.urlopen(server.url + "/ping", timeout=1) as response:
                        if response.status == 200:
                            return server
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"target server did not answer /ping within {READY_TIMEOUT_S} s: {argv}")
    except BaseException:
        proc.kill()
        proc.wait(timeout=5)
        raise


@pytest.fixture
def start_target() -> Iterator[Callable[..., TargetServer]]:
    """Factory fixture: `start_target(*args, env=None, **flags) -> TargetServer`; every server it started is
    stopped (SIGTERM, then SIGKILL) when the test ends, whatever happened."""
    started: list[TargetServer] = []

    def start(*args: str, env: dict[str, str] | None = None, **flags: Any) -> TargetServer:
        server = launch_target(*args, env=env, **flags)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
        server.log_path.unlink(missing_ok=True)


# -- the house rule: a test that starts a real server, a subprocess or sleeps carries `slow` ---------

STARTS_OR_SLEEPS = re.compile(
    r"\b(launch_target|start_target|run_locust|Nginx|RawServer|RecordingServer)\("
    r"|\bsubprocess\.(run|Popen|check_output)\("
    r"|\b(time|gevent)\.sleep\((?!0\))"
)


LISTENS = re.compile(r"\b(StreamServer|WSGIServer|HTTPServer|ThreadingHTTPServer)\(|\.listen\(")


@functools.cache
def module_servers(module: Any) -> re.Pattern[str] | None:
    """A test module's own classes that listen on a socket (a recorder on loopback, say), as calls."""
    names = [
        name
        for name, value in vars(module).items()
        if inspect.isclass(value) and value.__module__ == module.__name__ and LISTENS.search(_source(value))
    ]
    return re.compile(r"\b(" + "|".join(names) + r")\(") if names else None


def _source(thing: Any) -> str:
    try:
        return inspect.getsource(thing)
    except (OSError, TypeError):
        return ""


def starts_or_sleeps(item: pytest.Item) -> str | None:
    """What makes `item` slow by the house rule (a fixture or its own body), or None."""
    sources = [getattr(item, "function", None)]
    info = getattr(item, "_fixtureinfo", None)
    for name in item.fixturenames if info is not None else ():
        sources += [fixturedef.func for fixturedef in info.name2fixturedefs.get(name, ())]
    module = getattr(item, "module", None)
    local = module_servers(module) if module is not None else None
    for source in sources:
        if source is None:
            continue
        text = _source(source)
        found = STARTS_OR_SLEEPS.search(text) or (local.search(text) if local else None)
        if found:
            return f"{source.__name__}: {found.group(0)}"
    return None


# -- `make test` runs two pytest processes side by side (tests/run_both.py): the `load` lane holds the runs
# whose verdict depends on how much CPU the target and Locust get, one at a time; the other lane holds the
# rest (unit tests, guard namespaces, the wheel, the browser, bad input), which only wait or finish fast.
LOAD_MODULES = frozenset({
    "test_metastable_run", "test_clients_e2e", "test_comparison_run", "test_distributed_run",
    "test_adaptive_retry_e2e", "test_target_load", "test_server_series_e2e", "test_sweep", "test_mix_run",
    "test_adaptive_upstreams", "test_live_views_e2e", "test_fleet_run", "test_ramp", "test_wave",
    "test_tail", "test_target_workers", "test_latency_profile", "test_hedge_e2e", "test_final_csv",
    "test_defer_e2e", "test_tracing_e2e", "test_cliff_benchmark", "test_adaptive_benchmark",
    "test_criticality_e2e",
})  # fmt: skip


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.stem in LOAD_MODULES and item.get_closest_marker("slow") is not None:
            item.add_marker(pytest.mark.load)
    unmarked = [
        f"{item.nodeid} ({why})"
        for item in items
        if item.get_closest_marker("slow") is None and (why := starts_or_sleeps(item))
    ]
    if unmarked:
        raise pytest.UsageError(
            "these tests start a real server or a subprocess, or sleep, and are not marked slow "
            "(`pytestmark = pytest.mark.slow` or per test):\n  " + "\n  ".join(unmarked)
        )
