"""Test helpers for end-to-end runs: a real `locust --headless` process and its parsed CSV files.

Not a test module (no `test_` prefix); tests import it.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCUST = str(Path(sys.executable).with_name("locust"))


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@dataclass
class LocustRun:
    """What a finished headless run left behind: exit code, output and its parsed CSV files."""

    returncode: int
    output: str
    prefix: Path

    def stats(self) -> list[dict[str, str]]:
        return read_csv(Path(f"{self.prefix}_stats.csv"))

    def failures(self) -> list[dict[str, str]]:
        return read_csv(Path(f"{self.prefix}_failures.csv"))

    def row(self, request_type: str, name: str) -> dict[str, str] | None:
        for row in self.stats():
            if row["Type"] == request_type and row["Name"] == name:
                return row
        return None

    def count(self, request_type: str, name: str) -> int:
        row = self.row(request_type, name)
        return int(row["Request Count"]) if row else 0

    def failure_count(self, error_fragment: str, request_type: str | None = None) -> int:
        return sum(
            int(row["Occurrences"])
            for row in self.failures()
            if error_fragment in row["Error"] and (request_type is None or row["Method"] == request_type)
        )


def locust_command(
    *args: str, seconds: float | None = None, host: str | None = None, users: int = 1, locustfile: str = ""
) -> list[str]:
    """`locust --headless` with `users` spawned at once, for `seconds` against `host` (each if given),
    then `args`: options, then the user classes. Run it from the repo root (`ROOT`), where locust.conf is."""
    command = [LOCUST, *(("-f", locustfile) if locustfile else ())]
    command += ["--headless", "-u", str(users), "-r", str(users)]
    if seconds is not None:
        command += ["-t", f"{seconds}s"]
    if host is not None:
        command += ["--host", host]
    return [*command, *args]


def run_locust(
    user_class: str, host: str, seconds: float, *args: str, tmp_path: Path, users: int = 1
) -> LocustRun:
    """Run one client class headless for `seconds` against `host`, from the repo root (locust.conf)."""
    prefix = tmp_path / user_class
    options = ("--csv", str(prefix), "--stop-timeout", "0", *args)
    cmd = locust_command(*options, user_class, seconds=seconds, host=host, users=users)
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=seconds + 60)
    return LocustRun(result.returncode, result.stdout + result.stderr, prefix)
