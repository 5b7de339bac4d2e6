"""What the target benchmarks (`cliff.py`, `adaptive.py`) share: one run's start and finish.

A run starts with its results folder and the machine's load (`TargetRun.start`), runs its stages through
the comparison runner (`TargetRun.stage`), and finishes with the table of targets, PASS or MISS, written
to targets.md and targets.json beside a sentence that says when, where and under what load it was
measured (`TargetRun.finish`). `make bench` skips this file (its name starts with `_`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO, TypeVar

from comparison.config import RunConfig

R = TypeVar("R")


@dataclass(frozen=True)
class Check:
    """One line of the table: a target, what was measured, and the verdict."""

    number: int
    target: str
    client: str
    measured: str
    required: str
    passed: bool | None  # None: context, not a target
    beside: str = ""

    @property
    def verdict(self) -> str:
        return "" if self.passed is None else ("PASS" if self.passed else "MISS")


def markdown(checks: Sequence[Check]) -> str:
    lines = [
        "| # | target | client | measured | required | verdict | beside it |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for check in checks:
        cells = (
            str(check.number),
            check.target,
            check.client,
            check.measured,
            check.required,
            check.verdict,
            check.beside,
        )
        lines.append("| " + " | ".join(cell.replace("|", "/") or " " for cell in cells) + " |")
    return "\n".join(lines)


class UsageError(Exception):
    """argparse's complaint, as one line."""


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def target_parser(prog: str, description: str, results: Path, folder: str) -> OneLineParser:
    """`--quick`, `--check` and `--results-dir`: every target benchmark's options."""
    parser = OneLineParser(prog=prog, description=description)
    parser.add_argument("--quick", action="store_true", help="short stages: a smoke run, not the figures")
    parser.add_argument("--check", action="store_true", help="exit 1 if any target is missed")
    parser.add_argument("--results-dir", default=str(results), help=f"where the {folder}-<time> folder goes")
    return parser


@dataclass
class TargetRun:
    """One benchmark run, from its folder to its table."""

    prog: str
    quick: bool
    folder: Path
    out: TextIO
    load_before: float = field(default_factory=lambda: os.getloadavg()[0])
    started: float = field(default_factory=time.monotonic)
    runs: dict[str, str] = field(default_factory=dict)  # stage title -> its run folder

    @classmethod
    def start(
        cls, prog: str, quick: bool, results_dir: str, folder: str, stages: object, out: TextIO
    ) -> TargetRun:
        """Make `results_dir/<folder>-<UTC time>/` and say what runs, under what load."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = Path(results_dir) / f"{folder}-{stamp}"
        path.mkdir(parents=True, exist_ok=False)
        run = cls(prog, quick, path, out)
        out.write(
            f"{prog}: {run.kind} run, stages {stages} s per class; load average {run.load_before:.2f}; "
            f"writing {path}\n"
        )
        return run

    @property
    def kind(self) -> str:
        return "quick" if self.quick else "full"

    def stage(self, title: str, config: RunConfig, argv: list[str] | None = None) -> Any:
        """One runner run. Raises SystemExit on a failed run; returns the runner's outcome."""
        from comparison.runner import RunFailed, run

        self.out.write(f"\n== {title}\n")
        self.out.flush()
        try:
            outcome = run(config, out=self.out, argv=argv or [self.prog, title])
        except RunFailed as error:
            raise SystemExit(f"{self.prog}: error: {error}") from None
        if outcome.exit_code:
            raise SystemExit(outcome.exit_code)
        self.runs[title] = str(outcome.run_dir)
        return outcome

    def measured(self) -> str:
        """When, where and under what load: the first sentence of every table."""
        minutes = (time.monotonic() - self.started) / 60
        return (
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores, {self.kind} run "
            f"({minutes:.1f} min), load average {self.load_before:.2f} before and {os.getloadavg()[0]:.2f} "
            "after (1-minute; other work shares this machine)."
        )

    def finish(self, title: str, context: list[str], checks: Sequence[Check], **record: object) -> None:
        """Write targets.md and targets.json, and print the table."""
        table = markdown(checks)
        heading = f"# {title} ({self.prog}{' --quick' if self.quick else ''})"
        text = "\n".join([heading, "", *context, "", table, ""])
        (self.folder / "targets.md").write_text(text, encoding="utf-8")
        data = {"checks": [asdict(check) for check in checks], **record, "context": context}
        (self.folder / "targets.json").write_text(json.dumps(data, indent=2, default=str) + "\n", "utf-8")
        self.out.write("\n" + "\n".join(context) + f"\n\n{table}\n\ntargets: {self.folder / 'targets.md'}\n")


Report = tuple[str, list[str], list[Check], dict[str, object]]  # title, context, checks, for targets.json


def run_targets(
    argv: Sequence[str] | None,
    parser: OneLineParser,
    folder: str,
    durations: tuple[Any, Any],
    measure: Callable[[Any, TargetRun], R],
    report: Callable[[R, TargetRun], Report],
) -> int:
    """A target benchmark's `main`: its options, its run (`measure`, with the full or quick
    `durations`), and its table (`report`). Exit 2 on bad options, 130 when interrupted, 1 with
    `--check` when a target was missed."""
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    chosen = durations[1] if args.quick else durations[0]
    bench = TargetRun.start(parser.prog, args.quick, args.results_dir, folder, asdict(chosen), sys.stdout)
    try:
        measured = measure(chosen, bench)
    except KeyboardInterrupt:
        print(f"\n{parser.prog}: interrupted", file=sys.stderr)
        return 130
    title, context, checks, record = report(measured, bench)
    bench.finish(title, context, checks, **record)
    return 1 if args.check and any(check.passed is False for check in checks) else 0


def equivalent_command(config: RunConfig, prog: str, env: Mapping[str, str] | None = None) -> list[str]:
    """The `python -m comparison` command that runs this stage by itself (recorded in its run.json)."""
    command = [*(f"{k}={v}" for k, v in (env or {}).items()), "python -m comparison",
               "--scenario", config.scenario, "--clients", ",".join(config.clients),
               "--duration", f"{config.duration_s:g}"]  # fmt: skip
    if config.capacity is not None:
        command += ["--capacity", f"{config.capacity:.1f}"]
    if config.rate_multiplier is not None:
        command += ["--rate-multiplier", f"{config.rate_multiplier:g}"]
    if config.priority_shedding:
        command.append("--priority-shedding")
    if config.passthrough:
        command += ["--", *config.passthrough]
    return [*command, f"(a stage of {prog})"]
