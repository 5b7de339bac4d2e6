"""The target server the comparison runs against: an embedded subprocess, or one the user runs (--host).

The embedded server runs in its own process group, so that stopping it also stops anything it started,
and so that a Ctrl-C in the terminal reaches only the runner, which then stops children in order.
Every child also gets PDEATHSIG: if the runner itself is killed, the kernel stops the child too.
"""

from __future__ import annotations

import contextlib
import ctypes
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
from pathlib import Path
from typing import Any

from mitigations.checked_url import URLRefused, checked_url
from mitigations.outbound import fetch

READY_TIMEOUT_S = 15.0
STOP_GRACE_S = 5.0
LISTENING = re.compile(r"listening on (http://\S+)")
GUNICORN_LISTENING = re.compile(r"Listening at: (http://\S+)")
# Under gunicorn each worker gets what one `python -m target_server` has by default (max_sockets 256,
# backlog 128), so N workers are N copies of the single-process server behind one socket.
GUNICORN_OPTIONS = ("--worker-connections", "256", "--backlog", "128", "--graceful-timeout", "2",
                    "--timeout", "120")  # fmt: skip
_PR_SET_PDEATHSIG = 1


class TargetError(RuntimeError):
    """The target cannot be started or reached; the message is one line for the user."""


class TargetRefused(TargetError):
    """The target answered 403: a Hammerlab target's /admin answers clients on its own machine only."""


def _die_with_parent() -> None:
    """In the child, before exec: receive SIGTERM when the runner dies (Linux; ignored elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def start_child(
    command: list[str], log_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start `command` in its own session, stdout and stderr into `log_path`. It runs in the folder the
    comparison was started from, as the user's own `locust` would, so relative paths after `--` mean
    what they meant there; the lab's files are found by absolute path (user_locustfile.py)."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )


def stop_child(
    process: subprocess.Popen[bytes], first: int = signal.SIGTERM, grace: float = STOP_GRACE_S
) -> int:
    """Signal the child's process group, wait `grace` seconds, then SIGKILL it. Returns the exit code."""
    if process.poll() is None:
        _signal_group(process, first)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait(timeout=grace)
    _signal_group(process, signal.SIGKILL)  # anything the child left behind in its group
    return process.returncode


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)  # start_new_session: the group id is the child's pid


def request(method: str, url: str, body: Any = None, timeout: float = 3.0, allow_remote: bool = False) -> Any:
    """One small JSON request to the target (/stats, /admin), through the loopback guard (`allow_remote`:
    the comparison's own --allow-remote). Raises TargetError with one line."""
    data = None if body is None else json.dumps(body).encode()
    try:
        answer = fetch(
            checked_url(url, allow_remote), method, data, {"Content-Type": "application/json"}, timeout
        )
    except URLRefused as refused:
        raise TargetError(str(refused)) from None
    except (OSError, http.client.HTTPException) as error:
        raise TargetError(f"{method} {url} failed: {error or type(error).__name__}") from None
    raw = answer.body
    if answer.status >= 300:
        refused = TargetRefused if answer.status == 403 else TargetError
        raise refused(f"{method} {url} answered {answer.status}: {raw[:200]!r}")
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode("utf-8", "replace")


def check_reachable(url: str, timeout: float = 2.0, allow_remote: bool = False) -> None:
    """Fail fast, before any load: GET /ping must answer 200 within `timeout` seconds."""
    try:
        request("GET", url.rstrip("/") + "/ping", timeout=timeout, allow_remote=allow_remote)
    except TargetError as error:
        raise TargetError(
            f"--host {url} is not reachable ({str(error).split(' failed: ')[-1]}); "
            "start the target there or leave --host out to run an embedded one"
        ) from None


class EmbeddedTarget:
    """`python -m target_server` on a free loopback port, started fresh for each class."""

    def __init__(self, extra_args: tuple[str, ...] = (), workers: int = 1) -> None:
        self.extra_args = extra_args
        self.workers = workers
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def command(self) -> tuple[list[str], dict[str, str] | None, re.Pattern[str]]:
        """One process (`python -m target_server`), or with `workers` > 1 gunicorn with that many gevent
        workers, configured through TARGET_* (the form the target documents; `/stats` sums the workers)."""
        if self.workers <= 1:
            command = [sys.executable, "-m", "target_server", "--host", "127.0.0.1", "--port", "0", "--quiet"]
            return [*command, *self.extra_args], None, LISTENING
        gunicorn = str(Path(sys.executable).with_name("gunicorn"))
        command = [gunicorn, "-k", "gevent", "-w", str(self.workers), "-b", "127.0.0.1:0", *GUNICORN_OPTIONS,
                   "target_server.app:create_app()"]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("TARGET_")}
        return command, {**env, "TARGET_QUIET": "1"}, GUNICORN_LISTENING

    @property
    def describe(self) -> str:
        if self.workers <= 1:
            return "embedded: python -m target_server, restarted for every class"
        return f"embedded: gunicorn with {self.workers} gevent workers, restarted for every class"

    def start(self, log_path: Path) -> str:
        """Start and wait until /ping answers. `--port 0` lets the server pick its port: no race."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        offset = log_path.stat().st_size if log_path.exists() else 0
        command, env, listening = self.command()
        self.process = start_child(command, log_path, env)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = log_path.read_text(errors="replace")[offset:].strip().splitlines()
                raise TargetError(
                    f"the target server exited with code {self.process.returncode}: "
                    f"{tail[-1] if tail else 'no output'}"
                )
            found = listening.search(log_path.read_text(errors="replace")[offset:])
            if found:
                self.url = found.group(1)
                try:
                    request("GET", self.url + "/ping", timeout=1.0)
                    return self.url
                except TargetError:
                    pass
            time.sleep(0.05)
        self.stop()
        raise TargetError(
            f"the target server did not answer /ping within {READY_TIMEOUT_S:g} s; see {log_path}"
        )

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def stop(self) -> None:
        if self.process is not None:
            stop_child(self.process)
            if self.workers > 1:  # the workers' shared /stats directory, named after gunicorn's pid
                shutil.rmtree(Path(tempfile.gettempdir()) / f"hammerlab-target-{self.process.pid}", True)
            self.process = None


NOT_RESET = "not reset (its /admin answers clients on its own machine only)"


def reset_target(url: str, allow_remote: bool = False) -> str:
    """Between classes on a user's server: clear faults and zero the totals, then let it drain. Returns
    `reset`, or NOT_RESET for a target on another machine (a distributed run's master rarely sits on
    the target's host): the run goes on without the reset, as it does for a service that is not
    Hammerlab's, and its drain is left to the class's own."""
    try:
        request("DELETE", url + "/admin/faults", allow_remote=allow_remote)
    except TargetRefused:
        return NOT_RESET
    request("POST", url + "/admin/reset", allow_remote=allow_remote)
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        stats = request("GET", url + "/stats", allow_remote=allow_remote)
        if isinstance(stats, dict) and stats.get("in_flight", 0) == 0 and stats.get("lag_ms", 0) < 20:
            break
        time.sleep(0.25)
    return "reset"


def inject_outage(url: str, duration_s: float, allow_remote: bool = False) -> tuple[float, float]:
    """Start an outage now. Returns its (start, end) in unix seconds, as the server recorded them."""
    body = {"kind": "outage", "duration_s": duration_s}
    answer = request("POST", url + "/admin/faults", body, allow_remote=allow_remote)
    started = float(answer["fault"]["started_at"])
    return started, started + duration_s


def sync_work_ms(url: str, allow_remote: bool = False) -> float:
    """The target's effective sync_work_ms (the CPU-bound part of each request), from /stats."""
    stats = request("GET", url + "/stats", allow_remote=allow_remote)
    try:
        return float(stats["config"]["sync_work_ms"])
    except (TypeError, KeyError, ValueError):
        raise TargetError(f"{url}/stats has no config.sync_work_ms: not a Hammerlab target") from None


def change_capacity(
    url: str, sync_work: float, duration_s: float, allow_remote: bool = False
) -> tuple[float, float]:
    """Set sync_work_ms for `duration_s` seconds through POST /admin/config; the server reverts by itself.
    Returns the change's (start, end) in unix seconds, taken halfway through the admin request."""
    sent = time.time()
    body = {"sync_work_ms": sync_work, "duration_s": duration_s}
    request("POST", url + "/admin/config", body, allow_remote=allow_remote)
    started = (sent + time.time()) / 2
    return started, started + duration_s


def wait_for_overrides_to_end(url: str, timeout_s: float, allow_remote: bool = False) -> None:
    """Wait until the target lists no run-time override of sync_work_ms (it reverts by itself)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answer = request("GET", url + "/admin/config", allow_remote=allow_remote)
        if not isinstance(answer, dict) or "sync_work_ms" not in (answer.get("overrides") or {}):
            return
        time.sleep(0.1)
    raise TargetError(f"{url} still overrides sync_work_ms after {timeout_s:g} s")
