"""`--locustfile`: a user's own locustfile, run side by side with the lab's classes.

Every Locust process of the run gets `-f <the lab's locustfiles>,<your file>`, so `--clients` may name
the lab's classes and yours together (`MyClient,ThrottledClient`). Locust itself lists the classes it
finds (`runner.available_clients`), so a class the file does not define is refused before any load.
run.json keeps the file's absolute path and SHA-256 (`reproduce.locustfile`); `--rerun` refuses when the
file has changed since, because the numbers would then belong to other code.

Both paths are absolute: Locust runs from the folder the user runs the comparison from, and the lab's
locustfiles live wherever the package is installed (a checkout or site-packages), never the cwd.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comparison import ROOT

LAB_LOCUSTFILES = ROOT / "locustfiles"
"""The lab's own user classes: beside this package, in a checkout or in site-packages."""

MAX_BYTES = 10 * 1024 * 1024  # a locustfile is code; anything larger is not one


class LocustfileError(ValueError):
    """A bad --locustfile; the message is the one line the user sees (without the option name)."""


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class UserLocustfile:
    """An existing .py file (absolute path) and the SHA-256 of its bytes when the run was configured."""

    path: Path
    sha256: str

    @classmethod
    def check(cls, text: str) -> UserLocustfile:
        """The --locustfile value, checked: it exists, is a file, ends in .py and can be read."""
        shown = repr(text) if len(text) <= 120 else repr(text[:118]) + "…"
        if not text.strip() or "\x00" in text:
            raise LocustfileError(f"{shown} is not a path to a .py file")
        path = Path(text).expanduser()
        if path.is_dir():
            raise LocustfileError(f"{shown} is a folder; give one .py file (your classes beside the lab's)")
        if not path.exists():
            raise LocustfileError(f"{shown} does not exist")
        if path.suffix != ".py":
            raise LocustfileError(f"{shown} is not a .py file")
        if not path.is_file():
            raise LocustfileError(f"{shown} is not a regular file")
        try:
            size = path.stat().st_size
            if size > MAX_BYTES:
                raise LocustfileError(f"{shown} is {size:,} bytes; a locustfile is at most {MAX_BYTES:,}")
            digest = sha256_of(path)
        except OSError as error:
            raise LocustfileError(f"{shown} cannot be read ({error.strerror or error})") from None
        return cls(path.resolve(), digest)

    def record(self) -> dict[str, Any]:
        """run.json's `reproduce.locustfile`."""
        return {"path": str(self.path), "sha256": self.sha256}


def locustfile_arg(user: UserLocustfile | None, *more: Path) -> str:
    """Locust's `-f` value: the lab's locustfiles, the user's file, then any extra file (a shape)."""
    return ",".join([str(LAB_LOCUSTFILES), *([str(user.path)] if user else []), *(str(p) for p in more)])


def changed_since(recorded: dict[str, Any]) -> str | None:
    """Why a run recorded with this `reproduce.locustfile` cannot be repeated now, as one line; None
    when the file is still there with the same bytes."""
    path = Path(str(recorded.get("path", "")))
    try:
        now = sha256_of(path)
    except OSError as error:
        return f"its --locustfile {str(path)!r} cannot be read now ({error.strerror or error})"
    then = str(recorded.get("sha256"))
    if now != then:
        return (
            f"its --locustfile {str(path)!r} has changed since the run (sha256 {then[:12]} then, "
            f"{now[:12]} now); restore it, or start a new run"
        )
    return None
