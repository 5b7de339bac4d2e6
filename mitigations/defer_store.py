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
- Each row has a `state`: `queued`; `sending` from just before a replay goes on the wire (the mark is
  committed first) until its final outcome deletes the row, so a row left `sending` is a replay whose
  outcome is unknown (cut short or killed); `in-doubt` and `bad` rows are set aside when a new run loads
  the file (kept for inspection, never sent, counted once by that run). See `load`.
- Every loaded row meets the request checks a fresh call meets (`mitigations.request.RequestSpec`): a
  row that fails them (a planted or damaged row) is set aside as `bad` with its reason, never sent.
- `BatchWriter` runs every write in gevent's thread pool and groups the writes that arrive while one is
  running into a single transaction: the gevent loop never waits for the disk (see
  `benchmarks/defer_writes.py` for the measured stall with and without it).
"""

from __future__ import annotations

import fcntl
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
import gevent.event

from mitigations.defer_checks import (
    MAX_FILES_PER_CLASS,
    QueueProblem,
    check_file,
    default_directory,
    make_folder,
    queue_file,
)
from mitigations.defer_rows import (
    BAD,
    COLUMNS,
    IN_DOUBT,
    OLD_SHAPE,
    QUEUED,
    SCHEMA,
    SENDING,
    TABLE,
    DeferredCall,
    Loaded,
    table_shape,
)

__all__ = ["DeferredCall", "QueueProblem", "default_directory"]


class DeferStore:
    """The SQLite file of one client class in this process. Blocking: call it from a thread."""

    def __init__(self, path: Path, lock_handle: Any) -> None:
        self.path = path
        self._lock = lock_handle
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        problem = table_shape(self._db)
        if problem:
            raise QueueProblem(f"{path} {problem}")
        if tuple(row[1] for row in self._db.execute(f"PRAGMA table_info({TABLE})")) == OLD_SHAPE:
            self._db.execute(f"ALTER TABLE {TABLE} ADD COLUMN state TEXT NOT NULL DEFAULT '{QUEUED}'")
            self._db.execute(f"ALTER TABLE {TABLE} ADD COLUMN reason TEXT")
        self._db.execute(SCHEMA)

    @classmethod
    def open(cls, directory: str | Path, client: str, *, private: bool = False) -> DeferStore:
        """Take the first file of `client` under `directory` that no live process holds. Raises
        QueueProblem (one line) for a folder or file that cannot hold a queue."""
        folder = Path(directory)
        make_folder(folder, private=private)
        for number in range(1, MAX_FILES_PER_CLASS + 1):
            path = queue_file(folder, client, number)
            check_file(path)
            handle = open(f"{path}.lock", "a+b")  # noqa: SIM115  (held for the store's life)
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:
                return cls(path, handle)
            except (sqlite3.Error, QueueProblem) as error:
                handle.close()
                raise QueueProblem(f"--defer-dir: {path} cannot hold a queue ({error})") from None
        raise QueueProblem(
            f"--defer-dir {folder}: {MAX_FILES_PER_CLASS} processes already hold a queue of {client}"
        )

    def load(self) -> Loaded:
        """Every queued call, oldest (lowest id) first, after setting aside in one transaction:
        - `bad` rows: they fail the request checks (`DeferredCall.problem`) or cannot be read;
        - `in-doubt` rows: left `sending` by a replay whose outcome is unknown, for a call that is not
          safe to send twice (`DeferredCall.safe_to_resend`). Safe ones are replayed (at-least-once).
        Set-aside rows stay in the file for inspection and are skipped by every later load."""
        found = Loaded()
        rows = self._db.execute(
            f"SELECT {COLUMNS}, state FROM {TABLE} WHERE state IN (?, ?) ORDER BY id", (QUEUED, SENDING)
        ).fetchall()
        for row in rows:
            try:
                call = DeferredCall.from_row(row)
                problem = call.problem()
            except (ValueError, TypeError) as error:  # bad JSON, a row of the wrong types
                call, problem = None, f"unreadable row ({type(error).__name__})"
            if problem is not None:
                found.bad.append((row[0], problem))
            elif call is not None and call.state == SENDING and not call.safe_to_resend:
                found.in_doubt.append(call)
            elif call is not None:
                found.calls.append(call)
        marks = [(BAD, why, id_) for id_, why in found.bad] + [
            (IN_DOUBT, "a replay's outcome is unknown and the call is not safe to send twice", call.id)
            for call in found.in_doubt
        ]
        if marks:
            self.write([], [], marks=marks)
        found.last_id = int(self._db.execute(f"SELECT COALESCE(MAX(id), 0) FROM {TABLE}").fetchone()[0])
        return found

    def write(
        self, inserts: list[DeferredCall], deletes: list[int], marks: list[tuple[str, str | None, int]] = ()
    ) -> None:
        """One transaction: everything or nothing reaches the file. `marks` are (state, reason, id)."""
        with self._db:
            self._db.execute("BEGIN")
            if inserts:
                self._db.executemany(
                    f"INSERT OR REPLACE INTO deferred ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [call.row() for call in inserts],
                )
            if marks:
                self._db.executemany(f"UPDATE {TABLE} SET state = ?, reason = ? WHERE id = ?", marks)
            if deletes:
                self._db.executemany("DELETE FROM deferred WHERE id = ?", [(i,) for i in deletes])

    def count(self) -> int:
        """Rows still to replay (set-aside rows are not counted)."""
        query = f"SELECT COUNT(*) FROM {TABLE} WHERE state IN (?, ?)"
        return int(self._db.execute(query, (QUEUED, SENDING)).fetchone()[0])

    def close(self) -> None:
        self._db.close()
        self._lock.close()  # releases the flock


def in_thread(function: Callable[..., Any], *args: Any) -> Any:
    """Run blocking `function(*args)` in gevent's thread pool; only the calling greenlet waits. An
    exception is raised here, in the caller (the pool would print it as a traceback of its own)."""

    def guarded() -> tuple[Any, BaseException | None]:
        try:
            return function(*args), None
        except Exception as error:  # handed to the caller, who decides
            return None, error

    value, error = gevent.get_hub().threadpool.apply(guarded)
    if error is not None:
        raise error
    return value


class BatchWriter:
    """Serialises writes to one `DeferStore` through one greenlet, a batch per transaction.

    `insert` waits until its call is committed (so a call reported as deferred is on disk); `delete`
    does not wait (losing a delete to a crash means one extra replay: at-least-once, never a loss).
    `mark` sets a row's state; with `wait` it returns once committed (a replay marks its row `sending`
    before it goes on the wire, so a crash can never hide that it may have been sent).
    `run_blocking` is how the store is used from the loop; tests pass an inline one to compare.
    """

    def __init__(self, store: DeferStore, run_blocking: Callable[..., Any] = in_thread) -> None:
        self.store = store
        self._run = run_blocking
        self._inserts: list[DeferredCall] = []
        self._deletes: list[int] = []
        self._marks: list[tuple[str, str | None, int]] = []
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
        self._wait()

    def mark(self, call_id: int, state: str, *, wait: bool = False) -> None:
        """Set a row's state; with `wait`, return once committed (raises like `insert`)."""
        if self._closed:
            raise OSError("the defer queue is closed")
        self._marks.append((state, None, call_id))
        if wait:
            self._wait()
        else:
            self._wake.set()

    def _wait(self) -> None:
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
            if self._closed and not (self._inserts or self._deletes or self._marks):
                return

    def _flush(self) -> None:
        inserts, deletes, marks, committed = self._inserts, self._deletes, self._marks, self._committed
        if not (inserts or deletes or marks):
            return
        self._inserts, self._deletes, self._marks, self._committed = [], [], [], gevent.event.Event()
        try:
            self._run(self.store.write, inserts, deletes, marks)
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
