"""What a scenario is: one small base class that every module in comparison/scenarios/ fills in.

A scenario declares its name, its default multiple of C and run length, its options and their checks,
its load plan and the target's arguments, the event it injects and when, the columns it fills and how it
judges them, its sections of report.html and summary.md, and its sentences. Every hook has a default
that does nothing, so the plainest scenario (a constant multiple of C) is four lines. The runner, the
config, the command line, the report and the narrative loop over the registry (`comparison.scenarios`)
and name no scenario.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from comparison.plan import LoadPlan
from comparison.readers import ClassFiles
from comparison.summary import ClassResult, Summary

DEFAULT_DURATION_S = 30.0
Number = Callable[[str], Callable[[str], float]]  # __main__'s factory of argparse number types
Window = tuple[float, float]  # (start, end), unix seconds


class RunSettings(Protocol):
    """The part of `comparison.config.RunConfig` a scenario reads (the config imports the scenarios)."""

    scenario: str
    clients: tuple[str, ...]
    duration_s: float
    rate_multiplier: float | None
    launch_rate: float | None
    workers: int
    mix: tuple[tuple[str, int], ...]
    scenario_options: Any
    allow_remote: bool  # the run's own --allow-remote: the events' /admin calls go through the guard


@dataclass(frozen=True)
class Prepared:
    """What a scenario adds once C is known: its plan, the embedded target's extra flags, a note."""

    plan: LoadPlan
    target_args: tuple[str, ...] = ()
    note: str = ""


class Scenario:
    """One scenario. Subclasses set the class attributes and override the hooks they need."""

    name: str = ""
    order: float = 100.0  # its place in --scenario's help and error lines
    default: bool = False  # the scenario when --scenario is not given (exactly one)
    help: str = ""  # one line for --scenario's help: the load and the event
    multiplier: float = 1.0  # the default offered load, x C
    duration_s: float = DEFAULT_DURATION_S  # the default --duration
    workers: int = 1  # the default --workers
    plain: bool = False  # only a load, no event: the ones to suggest for a service that is not ours
    fault: str = ""  # what it asks of the target that only Hammerlab's target_server can do
    work_factor: float | None = None  # it multiplies sync_work_ms mid-run: the probe measures C' too
    judges_fleet: bool = False  # fleet.csv's targets are judged (not only reported)
    option_dests: tuple[str, ...] = ()  # the argparse dests of the options only it takes
    columns: tuple[str, ...] = ()  # summary.csv columns it appends after the shared ones
    clients: tuple[str, ...] = ()  # the default --clients when not the lab's seven

    # -- options ----------------------------------------------------------------------------------------

    def add_arguments(self, parser: argparse.ArgumentParser, number: Number) -> None:
        """Its own options on `python -m comparison`'s parser."""

    def options(self, args: argparse.Namespace) -> Any:
        """Its own options, parsed and checked (raise ConfigError); None when it has none."""
        return None

    def defaults(self, args: argparse.Namespace, options: Any) -> dict[str, Any]:
        """RunConfig fields it sets when the user did not (clients, duration_s, workers)."""
        return {}

    def check(self, config: RunSettings) -> None:
        """Refuse a run it cannot do, with one ConfigError line."""

    # -- the run ----------------------------------------------------------------------------------------

    def shape(self, config: RunSettings, capacity_rps: float, reduced_rps: float | None) -> LoadPlan:
        """Its load plan for one process; the runner then splits it over workers and a mix."""
        rate = config.launch_rate or (config.rate_multiplier or self.multiplier) * capacity_rps
        return LoadPlan(self.name, capacity_rps, config.duration_s, 1, rate, rate)

    def prepare(self, config: RunSettings, plan: LoadPlan, capacity_rps: float) -> Prepared:
        return Prepared(plan)

    def event(
        self, url: str, plan: LoadPlan, config: RunSettings, entry: dict[str, Any]
    ) -> Callable[[], Window] | None:
        """What the runner calls once at `plan.event_at_s` (it returns the event's window); None for no
        event. `entry` is the class's part of run.json, for the record."""
        return None

    def result(self, client: str, files: ClassFiles, window: Window | None) -> ClassResult:
        return ClassResult(client, files, window)

    def run(self, config: Any, out: Any, argv: list[str] | None, runner: Any) -> Any:
        """A scenario that is not one run (a grid of runs) runs itself with the runner's parts and
        returns a RunOutcome; None means the runner's one run."""
        return None

    # -- judging and telling ----------------------------------------------------------------------------

    def adjust(self, summary: Summary, result: ClassResult, plan: LoadPlan, config: RunSettings) -> Summary:
        """The summary row with the columns it fills, judged from the class's files."""
        return summary

    def extra(self, summary: Summary, **cells: object) -> Summary:
        """`summary` with this scenario's own columns set (in `columns` order)."""
        return replace(summary, extra=tuple((name, cells.get(name)) for name in self.columns))

    def shape_words(self, plan: LoadPlan, ratio: float) -> str:
        """How the offered load reads in the setting sentence."""
        return f"{plan.offered_rps:,.0f} requests/s ({ratio:.1f} x)"

    def event_words(self, plan: LoadPlan) -> str:
        """The event, appended to the setting sentence (`, with ...`)."""
        return ""

    def story(self, summaries: Sequence[Summary], plan: LoadPlan) -> list[str] | None:
        """The sentences after the verdict; None for the shared ones (worst lag, then healthiest)."""
        return None

    def shade(self, axes: Any, plan: LoadPlan) -> None:
        """Mark its phases on a time axis of report.html."""

    def section(
        self,
        plan: LoadPlan,
        results: Sequence[ClassResult],
        summaries: Sequence[Summary],
        config: RunSettings,
    ) -> str:
        """Its own HTML section of report.html, after the per-class charts."""
        return ""

    def markdown(
        self, run_dir: Path, plan: LoadPlan, results: Sequence[ClassResult], summaries: Sequence[Summary]
    ) -> str:
        """Its own part of summary.md, appended after the notes."""
        return ""
