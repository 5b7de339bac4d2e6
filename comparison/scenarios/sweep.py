"""`sweep`: one class, once per value of one numeric client option, at the scenario's offered load.

`--scenario sweep --clients ThrottledClient --sweep max-concurrent=8,12,16,24,32,48,64` answers the
question a user tuning a static setting has: which value? It probes C once, then runs the class once per
value (a Locust run of its own, `--max-concurrent 8` passed after the user's own options after `--`,
a fresh embedded target each, or the user's --host reset or left alone as in a plain run) at 2 x C by
default (--rate-multiplier sets it). Each value is judged by SLO goodput, p50, p99 and server lag p95;
comparison/pareto.py marks the Pareto front of SLO goodput against p99 and the knee, and picks a value.

Writes summary.csv (one row per value, the shared columns plus sweep_point, sweep_value, on_front and
knee), summary.md and report.html (the table, the recommendation and a chart of the front); each value's
Locust files are under points/<value>/. `run_points` also runs points that are not values (the
benchmark's adaptive modes, benchmarks/pareto.py) in the same run, on the same C.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from comparison import pareto
from comparison.errors import ConfigError
from comparison.inputs import reserved_spelling
from comparison.scenarios.base import Number, RunSettings, Scenario
from target_server.numbers import DECIMAL, INTEGER, MAX_CHARS

MAX_VALUES = 20
EXAMPLE = "max-concurrent=8,12,16,24,32,48,64"


_TABLE = """
import json
from locust_plugin.options import OPTIONS
print(json.dumps({o.flag[2:]: [o.parse.low, o.parse.high, o.parse.zero, o.parse.__name__ == "whole",
                               o.parse.allowed] if hasattr(o.parse, "low") else None for o in OPTIONS}))
"""


@functools.cache
def plugin_options() -> dict[str, Any]:
    """locust_plugin/options.py's table, read by a child Python (importing the plugin imports Locust,
    whose gevent patching must not happen in the runner): flag without dashes -> [low, high, zero,
    whole, allowed] for a number, None for any other option."""
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", _TABLE], capture_output=True, text=True, timeout=60,
                          cwd=root, check=False)  # fmt: skip
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError("--sweep", f"cannot read the client options' table: {last}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def numeric_options() -> dict[str, Any]:
    """The client options that take a number, minus those the runner sets (--launch-rate, --slo-ms)."""
    return {
        name: spec for name, spec in plugin_options().items() if spec and not reserved_spelling("--" + name)
    }


def check_value(option: str, spec: list[Any], text: str) -> None:
    """locust_plugin/values.py's `number` rule (plain ASCII, in range, 0 only where it means off), in
    its words; a ConfigError naming --sweep otherwise. tests/test_sweep.py keeps the two equal."""
    low, high, zero, whole, allowed = spec
    syntax = INTEGER if whole else DECIMAL
    if len(text) > MAX_CHARS or not syntax.fullmatch(text):
        kind = "a whole number (plain digits; no _, . or e)" if whole else "a number (plain digits like 12.5)"
        raise ConfigError("--sweep", f"{option}: {text[:MAX_CHARS]!r} is not {kind}")
    value = float(text)
    if not math.isfinite(value) or not (low <= value <= high or (zero and value == 0)):
        raise ConfigError("--sweep", f"{option}: {text!r} must be from {allowed}")


@dataclass(frozen=True)
class SweepOptions:
    """The option and its values, checked against locust_plugin/options.py; sorted, as Locust gets them."""

    option: str  # without dashes: max-concurrent
    values: tuple[str, ...]  # the values as passed to Locust, e.g. ("8", "16")

    def __post_init__(self) -> None:
        table = plugin_options()
        known = numeric_options()
        if self.option not in known:
            why = (
                "is set by the runner for every run; use the runner's own option"
                if self.option in table and reserved_spelling("--" + self.option)
                else "does not take a number"
                if self.option in table
                else "is not a client option"
            )
            raise ConfigError("--sweep", f"{self.option[:40]!r} {why}; numeric ones: {', '.join(known)}")
        if not 1 <= len(self.values) <= MAX_VALUES:
            raise ConfigError("--sweep", f"give from 1 to {MAX_VALUES} values, got {len(self.values)}")
        for text in self.values:
            check_value(self.option, known[self.option], text)
        numbers = [float(text) for text in self.values]
        if len(set(numbers)) != len(numbers):
            raise ConfigError("--sweep", f"{self.option}: each value once, got {','.join(self.values)}")

    @property
    def flag(self) -> str:
        return "--" + self.option

    @classmethod
    def parse(cls, text: str) -> SweepOptions:
        """`max-concurrent=8,16,32` (or `--max-concurrent=...`); one ConfigError line otherwise."""
        name, sep, values = text.partition("=")
        name = name.strip().lstrip("-")
        if not sep or not name:
            raise ConfigError("--sweep", f"{text[:60]!r} is not OPTION=V1,V2,..., e.g. {EXAMPLE}")
        items = [item.strip() for item in values.split(",") if item.strip()]
        if not items:
            raise ConfigError("--sweep", f"{name}: give its values after =, e.g. {EXAMPLE}")
        return cls(name, tuple(sorted(items, key=_sort_key)))

    def settings(self, client: str) -> list[Setting]:
        return [Setting(f"{self.option}={v}", client, (self.flag, v), float(v)) for v in self.values]


def _sort_key(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0  # refused by the check that follows, in the user's words


@dataclass(frozen=True)
class Setting:
    """One point to run: its label, its class, what goes after `--` for it, the swept value (or None)."""

    label: str
    client: str
    args: tuple[str, ...]
    value: float | None

    @property
    def folder(self) -> str:
        return re.sub(r"[^A-Za-z0-9.]+", "-", self.label).strip("-")


class Sweep(Scenario):
    name = "sweep"
    order = 91
    help = (
        "one class once per value of one numeric client option (--sweep OPTION=V1,V2,...) at 2 x C: "
        "the Pareto front of SLO goodput against p99, the knee, a value to use"
    )
    multiplier = 2.0
    duration_s = 20.0
    clients = ("ThrottledClient",)
    option_dests = ("sweep",)
    columns = ("sweep_point", "sweep_value", "on_front", "knee")

    def add_arguments(self, parser: argparse.ArgumentParser, number: Number) -> None:
        group = parser.add_argument_group(f"{self.name} scenario")
        group.add_argument(
            "--sweep",
            metavar="OPTION=V1,V2,...",
            help=f"{self.name}: the numeric client option to vary and its values, e.g. {EXAMPLE}; "
            f"each value is a run of --duration seconds (default {self.duration_s:g})",
        )

    def options(self, args: argparse.Namespace) -> SweepOptions | None:
        return None if args.sweep is None else SweepOptions.parse(args.sweep)

    def defaults(self, args: argparse.Namespace, options: Any) -> dict[str, Any]:
        return {"clients": self.clients} if args.clients is None and args.mix is None else {}

    def check(self, config: RunSettings) -> None:
        if not isinstance(config.scenario_options, SweepOptions):
            raise ConfigError("--sweep", f"name the option to vary and its values, e.g. --sweep {EXAMPLE}")
        if config.mix:
            raise ConfigError("--mix", f"not with the {self.name} scenario, which runs one class")
        if len(config.clients) != 1:
            raise ConfigError(
                "--clients",
                f"the {self.name} scenario runs exactly one class, got {','.join(config.clients)}",
            )

    def run(self, config: Any, out: Any, argv: list[str] | None, runner: Any) -> Any:
        options: SweepOptions = config.scenario_options
        given = [t for t in config.passthrough if t == options.flag or t.startswith(options.flag + "=")]
        if given:
            raise runner.RunFailed(f"after --: {given[0]} is what --sweep varies; leave it out", usage=True)
        return run_points(config, options.settings(config.clients[0]), runner, out, argv)

    def story(self, summaries: Sequence[Any], plan: Any) -> list[str] | None:
        return []


SCENARIO = Sweep()


def point_of(summary: Any) -> pareto.Point:
    """A summary row of a sweep as the point comparison/pareto.py judges."""
    value = summary.value("sweep_value")
    return pareto.Point(
        str(summary.value("sweep_point")),
        float(value) if value not in (None, "") else None,
        summary.slo_goodput_rps,
        summary.p50_ms,
        summary.p99_ms,
        summary.server_p95_lag_ms,
    )


def run_points(
    config: Any,
    settings: Sequence[Setting],
    runner: Any,
    out: TextIO = sys.stdout,
    argv: list[str] | None = None,
) -> Any:
    """Probe C once, run every setting as a Locust run of its own, and write the sweep's outputs; `runner`
    is comparison.runner, passed in so that this module does not import it back. Returns a RunOutcome."""
    from comparison.summary import summarise

    ServiceOptions, Interrupted, SignalGuard, TargetError, inspect, remote_problem = (
        runner.ServiceOptions, runner.Interrupted, runner.SignalGuard, runner.TargetError, runner.inspect,
        runner.remote_problem,
    )  # fmt: skip

    service = config.service or ServiceOptions()
    if config.host and (problem := remote_problem(config.host, service.allow_remote)):
        raise runner.RunFailed(problem, usage=True)  # before any socket to it is opened
    for client in dict.fromkeys(s.client for s in settings):
        runner.check_clients(replace(config, clients=(client,)))
    kind = None
    if config.host:
        try:
            kind = inspect(config.host, service.request(), service.allow_remote)
        except (TargetError, ValueError) as error:
            raise runner.RunFailed(str(error), usage=True) from None
    hammerlab = kind is None or kind.hammerlab
    run_dir = runner.run_dir_for(config)
    runner.point_latest(run_dir)
    embedded = None if config.host else runner.EmbeddedTarget(workers=config.target_workers)
    record = runner.RunRecord(
        scenario=config.scenario,
        clients=sorted({s.client for s in settings}),
        command=runner.command_line(argv or sys.argv),
        started_utc=datetime.now(UTC).isoformat(timespec="seconds"),
        machine=runner.machine(),
        target=config.host or embedded.describe,
    )
    if kind is not None and not kind.hammerlab:
        record.notes.append(kind.off_line(config.host, service.server_metrics) + ".")
    labels = ", ".join(s.label for s in settings)
    out.write(
        f"{config.scenario}: {len(settings)} runs of {config.duration_s:g} s ({labels}); writing {run_dir}\n"
    )
    summaries, exit_code, plan = [], 0, None
    guard = SignalGuard()
    with guard:
        try:
            plan = runner.measure_and_plan(config, embedded, run_dir, record, out, guard, hammerlab)
            for index, setting in enumerate(settings, start=1):
                mine = replace(
                    config, clients=(setting.client,), passthrough=(*config.passthrough, *setting.args)
                )
                point_dir = run_dir / "points" / setting.folder
                point_dir.mkdir(parents=True)
                out.write(f"\npoint {index} of {len(settings)}: {setting.client} {' '.join(setting.args)}\n")
                result = runner.run_class(mine, plan, embedded, point_dir, record, setting.client, index, out,
                                          len(settings), hammerlab)  # fmt: skip
                record.classes[setting.label] = record.classes.pop(setting.client)
                row = summarise(result, plan)
                summaries.append(
                    replace(
                        row,
                        extra=(
                            ("sweep_point", setting.label),
                            ("sweep_value", None if setting.value is None else f"{setting.value:g}"),
                        ),
                    )
                )
                out.write(f"  {setting.label}: {pareto.said(point_of(summaries[-1]))}\n")
                record.save(run_dir / "run.json")
        except Interrupted as interrupt:
            exit_code = interrupt.exit_code
            record.interrupted = True
            record.notes.append(
                f"Interrupted ({interrupt}): the table has the {len(summaries)} points that finished."
            )
        except Exception as error:  # LocustFailed, TargetError: one line
            if isinstance(error, runner.RunFailed):
                raise
            raise runner.RunFailed(str(error), usage=getattr(error, "usage", False)) from None
        finally:
            if embedded is not None:
                embedded.stop()
            record.finished_utc = datetime.now(UTC).isoformat(timespec="seconds")
            record.save(run_dir / "run.json")
    if plan is None or not summaries:
        return runner.RunOutcome(run_dir, [], exit_code or 1, None)
    described = runner.describe_run
    summaries, report = write_outputs(run_dir, config, settings, summaries, record, plan, out, described)
    return runner.RunOutcome(run_dir, summaries, exit_code, report)


def write_outputs(run_dir: Any, config: Any, settings: Sequence[Setting], summaries: list[Any], record: Any,
                  plan: Any, out: TextIO, describe_run: Any) -> tuple[list[Any], Any]:  # fmt: skip
    """summary.csv, summary.md and report.html, and the table and the recommendation on the terminal."""
    from comparison.summary import write_csv

    points = [point_of(s) for s in summaries]
    on, bend = pareto.front(points), pareto.knee(points)
    summaries = [
        replace(
            s, extra=(*s.extra, ("on_front", "yes" if flag else "no"), ("knee", "yes" if p is bend else "no"))
        )
        for s, p, flag in zip(summaries, points, on, strict=True)
    ]
    write_csv(summaries, run_dir / "summary.csv")
    options: SweepOptions = config.scenario_options
    pick, sentence = pareto.recommend(points, options.flag)
    title = f"Hammerlab sweep of {options.flag}: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    classes = ", ".join(dict.fromkeys(s.client for s in settings))
    load = (
        f"{classes} at {plan.offered_rps:,.1f} requests/s ({plan.offered_rps / plan.capacity_rps:.1f} x C), "
    )
    intro = load + f"{config.duration_s:g} s per point, SLO {plan.slo_ms:g} ms. " + describe_run(record)
    table = pareto.markdown_table(points)
    notes = "".join(f"- {note}\n" for note in record.notes)
    (run_dir / "summary.md").write_text(
        f"# {title}\n\n{intro}\n\n{table}\n\n{sentence}\n\n{pareto.RULES}\n"
        + (f"\n## Notes\n\n{notes}" if notes else ""),
        encoding="utf-8",
    )
    links = (
        "<h2>Each point's files</h2><ul>"
        + "".join(
            f'<li>{s.label}: <a href="points/{s.folder}/">points/{s.folder}/</a></li>'
            for s in settings[: len(points)]
        )
        + "</ul>"
    )
    chart = pareto.front_svg(
        points, f"{classes}: SLO goodput against p99, {plan.offered_rps / plan.capacity_rps:.1f} x C", pick
    )
    report = run_dir / "report.html"
    report.write_text(pareto.page(title, intro, sentence, points, chart, links), encoding="utf-8")
    out.write("\n" + pareto.text_table(points) + f"\n\n{sentence}\n({pareto.KNEE_RULE})\n\n")
    out.write(f"summary: {run_dir / 'summary.md'}\nreport:  {report}\n")
    out.flush()
    return summaries, report
