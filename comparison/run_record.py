"""run.json and the run's folder: what the run was, on what machine, from what command, and where.

`RunRecord` is written as the run goes, so an interrupted run still says how far it got; `describe_run`
puts the capacity probe and the machine into the paragraph that opens summary.md.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from comparison.config import RunConfig


class RunFailed(RuntimeError):
    """The run cannot go on; the message is one line. `usage` marks a bad input (exit 2)."""

    def __init__(self, message: str, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


def machine() -> dict[str, Any]:
    """What the numbers were measured on: they depend on it."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": model or platform.processor(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "locust": metadata.version("locust"),
    }


@dataclass
class RunRecord:
    """run.json: how this run was made, for the report and for anyone reading the folder later."""

    scenario: str
    clients: list[str]
    command: str
    started_utc: str
    machine: dict[str, Any]
    target: str
    capacity: dict[str, Any] = field(default_factory=dict)
    plan: dict[str, Any] = field(default_factory=dict)
    classes: dict[str, dict[str, Any]] = field(default_factory=dict)
    finished_utc: str = ""
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)
    reproduce: dict[str, Any] = field(default_factory=dict)  # comparison/rerun.py: what --rerun repeats

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")


def run_dir_for(config: RunConfig) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = config.results_dir / f"{config.scenario}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    try:
        path.mkdir(parents=True)
    except OSError as error:  # checked at parse time; the disk may still fill or a folder vanish
        raise RunFailed(f"--results-dir: cannot create {path} ({error.strerror})", usage=True) from None
    return path


def point_latest(run_dir: Path) -> None:
    """results/latest -> this run (a relative link, so the folder can be moved whole)."""
    link = run_dir.parent / "latest"
    temporary = run_dir.parent / f".latest-{os.getpid()}"
    if temporary.is_symlink():
        temporary.unlink()
    temporary.symlink_to(run_dir.name)
    os.replace(temporary, link)


def command_line(argv: Sequence[str]) -> str:
    """The command as a user would type it again: the program name as it is, the arguments quoted."""
    return " ".join([argv[0], shlex.join(argv[1:])]) if argv else ""


def describe_run(record: RunRecord) -> str:
    """The capacity probe and the machine, in one paragraph: the numbers depend on both."""
    capacity = record.capacity
    if capacity.get("source") == "ramp probe":
        how = (
            f"measured by a gentle ramp probe (knee at concurrency {capacity['knee']}, stopped: "
            f"{capacity['stopped']}; the table is below)"
        )
    elif capacity.get("source") == "closed-loop probe":
        how = (
            f"measured by a {capacity['seconds']:g} s closed-loop probe ({capacity['workers']} workers, "
            f"{capacity['ok']} ok, {capacity['failed']} failed)"
        )
    else:
        how = "given with --capacity"
    reduced = capacity.get("reduced")
    if reduced:
        how += f"; reduced capacity C' = {reduced['capacity_rps']:.1f} requests/s ({reduced['source']})"
    machine = record.machine
    return (
        f"Capacity C = {capacity.get('capacity_rps', 0):.1f} requests/s, {how}. Machine: {machine['cores']} "
        f"cores, {machine['cpu']}, {machine['system']}, Python {machine['python']}, Locust "
        f"{machine['locust']}. Target: {record.target}. Command: `{record.command}`."
    )
