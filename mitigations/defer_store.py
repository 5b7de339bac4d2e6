"""The durable queue behind `Defer`: one SQLite file (WAL mode) per client class, written off the loop.

Why SQLite from the standard library rather than a file format of our own: a transaction either
commits or it does not, so a process killed with SIGKILL mid-write leaves the last committed state and
nothing half-written, and the next process reads it with the same `sqlite3` module.

- WAL mode with `synchronous=NORMAL`: a commit survives the process being killed (SIGKILL, OOM); only a
  power cut or kernel crash may lose the last commits (SQLite's documented trade for WAL + NORMAL).
- One file per client class, `<dir>/<Class>.sqlite`. A second process of the same class (Locust
  `--processes`) finds the first file locked (`fcntl.flock` on `<file>.lock`) and takes
  `<Class>.2.sqlite`, and so on, so two processes never replay each other's rows. The kernel drops the
  lock when a process dies, so the next run takes the file over, leftovers included.
- `BatchWriter` runs every write in gevent's thread pool and groups the writes that arrive while one is
  running into a single transaction: the gevent loop never waits for the disk (see
  `benchmarks/defer_writes.py` for the measured stall with and without it).
"""

from __future__ import annotations

import fcntl
import json
import sqlite3
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
import gevent.event

SCHEMA = """
CREATE TABLE IF NOT EXISTS deferred (
    id INTEGER PRIMARY KEY,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    name TEXT,
    headers TEXT NOT NULL,
    body BLOB,
    launched_epoch REAL NOT NULL,
    max_age_s REAL NOT NULL,
    timeout_s REAL
)
"""
COLUMNS = "id, method, path, name, headers, body, launched_epoch, max_age_s, timeout_s"
MAX_FILES_PER_CLASS = 64


@dataclass
class DeferredCall:
    """One queued call, as stored: enough to send it again in another process.

    `launched_epoch` is wall-clock seconds (the monotonic clock does not survive a reboot); `timeout_s`
    is the call's total deadline counted from its start (None: none), given afresh to each replay.
    """

    id: int
    method: str
    path: str
    name: str | None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    launched_epoch: float = 0.0
    max_age_s: float = 60.0
    timeout_s: float | None = None

    def row(self) -> tuple[Any, ...]:
        return (
            self.id, self.method, self.path, self.name, json.dumps(self.headers, sort_keys=True),
            self.body, self.launched_epoch, self.max_age_s, self.timeout_s,
        )

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> DeferredCall:
        id_, method, path, name, headers, body, launched, max_age, timeout = row
        return cls(id_, method, path, name, json.loads(headers), body, launched, max_age, timeout)


class DeferStore:
    """The SQLite file of one client class in this process. Blocking: call it from a thread."""

    def __init__(self, path: Path, lock_handle: Any) -> None:
        self.path = path
        self._lock = lock_handle
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(SCHEMA)

    @classmethod
    def open(cls, directory: str | Path, client: str) -> DeferStore:
        """Take the first file of `client` under `directory` that no live process holds."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        for number in range(1, MAX_FILES_PER_CLASS + 1):
            path = folder / (f"{client}.sqlite" if number == 1 else f"{client}.{number}.sqlite")
            handle = open(f"{path}.lock", "a+b")  # noqa: SIM115  (held for the store's life)
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            return cls(path, handle)
        raise OSError(f"{folder}: {MAX_FILES_PER_CLASS} processes already hold a queue of {client}")

    def load(self) -> list[DeferredCall]:
        """Every stored call, oldest (lowest id) first."""
        rows = self._db.execute(f"SELECT {COLUMNS} FROM deferred ORDER BY id").fetchall()
        return [DeferredCall.from_row(row) for row in rows]

    def write(self, inserts: list[DeferredCall], deletes: list[int]) -> None:
        """One transaction: everything or nothing reaches the file."""
        with self._db:
            self._db.execute("BEGIN")
            if inserts:
                self._db.executemany(
                    f"INSERT OR REPLACE INTO deferred ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [call.row() for call in inserts],
                )
            if deletes:
                self._db.executemany("DELETE FROM deferred WHERE id = ?", [(i,) for i in deletes])

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM deferred").fetchone()[0])

    def close(self) -> None:
        self._db.close()
        self._lock.close()  # releases the flock


def in_thread(function: Callable[..., Any], *args: Any) -> Any:
    """Run blocking `function(*args)` in gevent's thread pool; only the calling greenlet waits."""
    return gevent.get_hub().threadpool.apply(function, args)


class BatchWriter:
    """Serialises writes to one `DeferStore` through one greenlet, a batch per transaction.

    `insert` waits until its call is committed (so a call reported as deferred is on disk); `delete`
    does not wait (losing a delete to a crash means one extra replay: at-least-once, never a loss).
    `run_blocking` is how the store is used from the loop; tests pass an inline one to compare.
    """

    def __init__(self, store: DeferStore, run_blocking: Callable[..., Any] = in_thread) -> None:
        self.store = store
        self._run = run_blocking
        self._inserts: list[DeferredCall] = []
        self._deletes: list[int] = []
        self._committed = gevent.event.Event()
        self._wake = gevent.event.Event()
        self._closed = False
        self.batches = 0
        self.failures = 0
        self._greenlet = gevent.spawn(self._loop)

    def insert(self, call: DeferredCall) -> None:
        """Queue `call` for the next transaction and wait until it is committed. Raises OSError (or
        sqlite3.Error) if that transaction failed."""
        if self._closed:
            raise OSError("the defer queue is closed")
        self._inserts.append(call)
        committed = self._committed
        self._wake.set()
        committed.wait()
        error = getattr(committed, "error", None)
        if error is not None:
            raise error

    def delete(self, call_id: int) -> None:
        self._deletes.append(call_id)
        self._wake.set()

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            self._flush()
            if self._closed and not (self._inserts or self._deletes):
                return

    def _flush(self) -> None:
        inserts, deletes, committed = self._inserts, self._deletes, self._committed
        if not (inserts or deletes):
            return
        self._inserts, self._deletes, self._committed = [], [], gevent.event.Event()
        try:
            self._run(self.store.write, inserts, deletes)
            self.batches += 1
        except (OSError, sqlite3.Error) as error:
            self.failures += 1
            committed.error = error  # type: ignore[attr-defined]
        committed.set()

    def close(self) -> None:
        """Commit what is pending, then close the file. Leftover rows stay for the next run."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        self._greenlet.join()
        self._run(self.store.close)


def default_directory() -> Path:
    """`<tmp>/hammerlab-defer` (`/tmp/hammerlab-defer` on Linux): outside the repository, and the same
    path for every run on this machine, so a run after a crash finds the last run's queue."""
    return Path(tempfile.gettempdir()) / "hammerlab-defer"
