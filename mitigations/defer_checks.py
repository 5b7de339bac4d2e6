"""Is a defer-queue folder usable? Checked before a run starts, so a bad `--defer-dir` is one line and exit 2.

Why a check of its own rather than the first write's error: the queue is opened in gevent's thread pool
at a client's first call, where a failure could only be logged mid-run, and a run whose queue cannot keep
anything is not the run the user asked for.

- The default folder is `<tmp>/hammerlab-defer-<uid>/<host>_<port>`: one per user (the temp directory is
  shared by every user of the machine, and a row planted there would be replayed as this user's call) and
  one per target (a queue kept for one server is never replayed at another). Both levels must belong to
  this user and be closed to everyone else (made 0700; refused when owned by someone else or writable by
  group or others).
- Any folder must be a directory this process can write (a probe file is made and removed: permission
  bits do not stop root, a read-only filesystem does).
- A class's queue file, where one exists, must be a regular file (not a folder, a FIFO, a device or a
  symlink loop), hold an SQLite database that passes `PRAGMA quick_check`, and have Hammerlab's table
  (or none yet). Its `.lock`, `-wal` and `-shm` companions must be regular files too.
"""

from __future__ import annotations

import errno
import os
import re
import sqlite3
import stat
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from mitigations.defer_rows import table_shape

MAX_FILES_PER_CLASS = 64
TABLE = "deferred"
COMPANIONS = (".lock", "-wal", "-shm")


class QueueProblem(ValueError):
    """An unusable defer-queue folder or file; the message is one line naming the path."""


def queue_file(folder: Path, client: str, number: int) -> Path:
    return folder / (f"{client}.sqlite" if number == 1 else f"{client}.{number}.sqlite")


def target_key(target: str) -> str:
    """`http://127.0.0.1:3000` -> `127.0.0.1_3000`: a folder name for the target a queue was made for."""
    try:
        parts = urlsplit(target.strip())
        host, port = parts.hostname or "", parts.port
    except ValueError:
        host, port = "", None
    if port is None:
        port = 443 if target.strip().lower().startswith("https:") else 80
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{host or 'no-host'}_{port}")


def user_base() -> Path:
    """`<tmp>/hammerlab-defer-<uid>`: this user's, never shared with another user of the machine."""
    return Path(tempfile.gettempdir()) / f"hammerlab-defer-{os.geteuid()}"


def default_directory(target: str = "") -> Path:
    """This user's folder for queues kept for `target` (the per-user base itself when no target)."""
    base = user_base()
    return base / target_key(target) if target else base


def _reason(error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return "is a symlink loop"
    return f"cannot be used ({error.strerror or type(error).__name__})"


def _kind(mode: int) -> str:
    kinds = (
        (stat.S_ISREG, "a file"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
        (stat.S_ISSOCK, "a socket"),
    )
    for test, name in kinds:
        if test(mode):
            return name
    return "not a regular file"  # pragma: no cover (a kind this lab cannot make)


def make_folder(folder: Path, *, private: bool) -> None:
    """Create `folder` (0700) if it is missing, then check it (see the module doc). Raises QueueProblem."""
    levels = [folder.parent, folder] if private and folder.parent == user_base() else [folder]
    for level in levels:
        try:
            level.mkdir(mode=0o700, parents=True, exist_ok=True)
        except FileExistsError:
            pass  # not a folder: said below
        except OSError as error:
            raise QueueProblem(f"--defer-dir {level} {_reason(error)}") from None
        try:
            info = level.stat()
        except OSError as error:
            raise QueueProblem(f"--defer-dir {level} {_reason(error)}") from None
        if not stat.S_ISDIR(info.st_mode):
            raise QueueProblem(f"--defer-dir {level} is {_kind(info.st_mode)}, not a folder")
        if private and info.st_uid != os.geteuid():
            raise QueueProblem(
                f"--defer-dir {level} belongs to uid {info.st_uid}, not to you (uid "
                f"{os.geteuid()}): another user could plant calls in it; remove it or pass "
                "--defer-dir"
            )
        if private and info.st_mode & 0o077:
            raise QueueProblem(
                f"--defer-dir {level} is open to other users (mode "
                f"{stat.S_IMODE(info.st_mode):o}); it must be 700: chmod 700 it or pass "
                "--defer-dir"
            )
    try:
        handle, probe = tempfile.mkstemp(prefix=".probe-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise QueueProblem(f"--defer-dir {folder} cannot be written ({error.strerror})") from None


def check_file(path: Path) -> None:
    """A class's queue file (and its companions), where present: see the module doc."""
    for each in (path, *(Path(f"{path}{suffix}") for suffix in COMPANIONS)):
        try:
            info = each.stat()
        except FileNotFoundError:
            if os.path.islink(each):
                raise QueueProblem(f"--defer-dir: {each} is a broken symlink") from None
            continue
        except OSError as error:
            raise QueueProblem(f"--defer-dir: {each} {_reason(error)}") from None
        if not stat.S_ISREG(info.st_mode):
            raise QueueProblem(f"--defer-dir: {each} is {_kind(info.st_mode)}, not a queue file")
    if path.exists():
        check_database(path)


def check_database(path: Path) -> None:
    """An SQLite file that passes quick_check and has Hammerlab's table or none."""
    try:
        db = sqlite3.connect(path, timeout=5)
    except sqlite3.Error as error:
        raise QueueProblem(f"--defer-dir: {path} cannot be opened ({error})") from None
    try:
        verdict = db.execute("PRAGMA quick_check").fetchone()[0]
        if verdict != "ok":
            raise QueueProblem(f"--defer-dir: {path} is a damaged SQLite database ({verdict})")
        problem = table_shape(db)
        if problem:
            raise QueueProblem(f"--defer-dir: {path} {problem}")
    except sqlite3.DatabaseError as error:
        raise QueueProblem(f"--defer-dir: {path} is not a usable SQLite database ({error})") from None
    finally:
        db.close()


def check_queue(folder: Path, client: str, *, private: bool) -> None:
    """Everything a run of `client` needs from `folder`, before it starts. Raises QueueProblem."""
    make_folder(folder, private=private)
    for number in range(1, MAX_FILES_PER_CLASS + 1):
        check_file(queue_file(folder, client, number))
