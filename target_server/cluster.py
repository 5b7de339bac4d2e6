"""Sharing between the worker processes of one server (gunicorn -w N), through a directory.

Each worker publishes its own counters as `worker-<pid>.json` a few times a second, and whoever answers
/stats adds them up. The admin state (faults, run-time config, the reset epoch) lives in `control.json`:
an admin request rewrites it under an flock, and every worker adopts a newer version on its next tick.
Files of dead workers are ignored, and so is a control file written under another master. Nothing here
runs with a single process (`python -m target_server`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CONTROL_FILE = "control.json"
LOCK_FILE = "control.lock"
WORKER_PREFIX = "worker-"
STALE_AFTER_S = 30.0


def default_gunicorn_dir() -> Path:
    """One directory per gunicorn master: its workers share the parent pid."""
    return Path(tempfile.gettempdir()) / f"hammerlab-target-{master_pid()}"


def master_pid() -> int:
    """The gunicorn master of this worker. The control file names it, so a new server ignores an old file."""
    return os.getppid()


def under_gunicorn() -> bool:
    """gunicorn's arbiter sets SERVER_SOFTWARE in its own environment, which its workers inherit."""
    return os.environ.get("SERVER_SOFTWARE", "").startswith("gunicorn/")


class Cluster:
    """This worker's view of the shared directory."""

    def __init__(self, directory: str | Path, pid: int | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.pid = pid or os.getpid()
        self._seen_control: tuple[int, int] | None = None

    def publish(self, snapshot: dict[str, Any]) -> None:
        _write_atomic(self.directory / f"{WORKER_PREFIX}{self.pid}.json", snapshot)

    def withdraw(self) -> None:
        with contextlib.suppress(OSError):
            (self.directory / f"{WORKER_PREFIX}{self.pid}.json").unlink()

    def peers(self, now: float) -> list[dict[str, Any]]:
        """Snapshots of the other live workers."""
        found = []
        for path in self.directory.glob(f"{WORKER_PREFIX}*.json"):
            try:
                pid = int(path.stem[len(WORKER_PREFIX) :])
            except ValueError:
                continue
            if pid == self.pid or not _alive(pid):
                continue
            try:
                if now - path.stat().st_mtime > STALE_AFTER_S:
                    continue
                found.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue  # being replaced or half-written by a dying worker: skip this round
        return found

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise read-modify-write of the control file. Held only for a file read and write."""
        with open(self.directory / LOCK_FILE, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def read_control(self, only_if_changed: bool = False) -> dict[str, Any] | None:
        path = self.directory / CONTROL_FILE
        try:
            stat = path.stat()
            signature = (stat.st_mtime_ns, stat.st_ino)
            if only_if_changed and signature == self._seen_control:
                return None
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        self._seen_control = signature
        return data

    def write_control(self, control: dict[str, Any]) -> None:
        _write_atomic(self.directory / CONTROL_FILE, control)


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
