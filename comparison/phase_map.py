"""`--scenario phase-map`: the metastable run over a grid of offered load x trigger length, per client.

The papers draw this by hand: the region of load and trigger size from which a system, once pushed, does
not come back. Here every cell is measured: one short metastable run (a fresh target, one Locust process)
per client, load and trigger length, judged by comparison/metastable.py's rules: quick, slow, not-back
(with the time it waited) or stuck. The phases are shorter than the metastable scenario's
(`MetastableDefaults`) so that the default grid, 4 loads x 4 triggers x 2 clients, fits in about 15
minutes on 2 cores; a 12 s after-phase leaves room for a sustained recovery that starts up to 7 s after
the trigger, and is too short to call a cell stuck (that needs STUCK_AFTER_S): such a cell says "not back
after 12 s". `--loads`, `--triggers`, `--pre-trigger-s` and `--after-trigger-s` widen it (each cell
costs its phases plus about 5 s); `--after-trigger-s 30` lets it say stuck.

Writes phase_map.csv (one row per cell), phase_map.md and report.html with one heat map per client.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import html
import io
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from comparison.metastable import NOT_BACK, RULE, MetastableOptions, judge_rows

DEFAULT_CLIENTS = ("NaiveRetryClient", "RetryClient")
DEFAULT_LOADS = (0.6, 0.8, 0.9, 1.0)
DEFAULT_TRIGGERS = (0.0, 5.0, 10.0, 20.0)
MAX_CELLS = 400
MAP_DRAIN_S = 0.5
MetastableDefaults = MetastableOptions(pre_s=3.0, after_s=12.0, warmup_s=1.0, quick_s=2.0)
GRID_COLUMNS = (
    "client", "load", "trigger_s", "offered_rps", "pre_trigger_slo_goodput_rps",
    "post_trigger_slo_goodput_rps", "recovered", "recovery_s", "peak_share", "verdict", "wasted_work_ratio",
    "waited_s",
)  # fmt: skip
COLOURS = {"quick": "#66bb6a", "slow": "#ffca28", NOT_BACK: "#fb8c00", "stuck": "#e53935"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("phase-map scenario")
    group.add_argument("--loads", help="phase-map: offered loads as multiples of C, comma-separated "
                       f"(default {','.join(f'{x:g}' for x in DEFAULT_LOADS)})")  # fmt: skip
    group.add_argument("--triggers", help="phase-map: trigger lengths in seconds, comma-separated "
                       f"(default {','.join(f'{x:g}' for x in DEFAULT_TRIGGERS)})")  # fmt: skip


def parse_list(
    option: str, text: str | None, default: tuple[float, ...], low: float, high: float
) -> tuple[float, ...]:
    """`0.6,0.8` -> (0.6, 0.8); one line naming the option and what is allowed otherwise."""
    from comparison.errors import ConfigError

    if text is None:
        return default
    values = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            value = float(item)
        except ValueError:
            raise ConfigError(option, f"{item!r} is not a number") from None
        if not low <= value <= high:
            raise ConfigError(option, f"{item} must be from {low:g} to {high:g}")
        values.append(value)
    if not values or len(set(values)) != len(values):
        raise ConfigError(option, "give one or more distinct numbers, comma-separated")
    return tuple(values)


@dataclass(frozen=True)
class Cell:
    client: str
    load: float
    trigger_s: float
    offered_rps: float
    pre: float | None
    post: float | None
    recovered: bool
    recovery_s: float | None
    peak_share: float | None
    verdict: str
    wasted_work_ratio: float | None
    waited_s: float = 0.0

    def row(self) -> dict[str, str]:
        def num(value: float | None, digits: int = 1) -> str:
            return "" if value is None else f"{value:.{digits}f}"

        return {
            "client": self.client, "load": f"{self.load:g}", "trigger_s": f"{self.trigger_s:g}",
            "offered_rps": num(self.offered_rps), "pre_trigger_slo_goodput_rps": num(self.pre),
            "post_trigger_slo_goodput_rps": num(self.post), "recovered": "yes" if self.recovered else "no",
            "recovery_s": "never" if self.recovery_s is None else f"{self.recovery_s:.2f}",
            "peak_share": num(self.peak_share, 2), "verdict": self.verdict,
            "wasted_work_ratio": num(self.wasted_work_ratio, 3), "waited_s": num(self.waited_s),
        }  # fmt: skip


def write_grid(cells: Sequence[Cell], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=GRID_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(cell.row() for cell in cells)


def read_grid(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def markdown(rows: Sequence[dict[str, str]]) -> str:
    """One table per client: loads down, trigger lengths across; each cell the verdict and when."""
    out = []
    for client in dict.fromkeys(row["client"] for row in rows):
        mine = [row for row in rows if row["client"] == client]
        loads = list(dict.fromkeys(row["load"] for row in mine))
        triggers = list(dict.fromkeys(row["trigger_s"] for row in mine))
        out.append(f"**{client}** (rows: offered load x C; columns: trigger length)\n")
        out.append("| load | " + " | ".join(f"{t} s" for t in triggers) + " |")
        out.append("| --- |" + " --- |" * len(triggers))
        for load in loads:
            cells = []
            for trigger in triggers:
                row = next((r for r in mine if r["load"] == load and r["trigger_s"] == trigger), None)
                cells.append("" if row is None else _label(row))
            out.append(f"| {load} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def _label(row: dict[str, str]) -> str:
    """quick 1.2 s, slow 4.0 s, not back after 12 s, stuck: a cell never claims more than it saw."""
    if row["verdict"] == "stuck":
        return "stuck"
    if row["verdict"] == NOT_BACK:
        waited = row.get("waited_s") or ""
        return f"not back after {float(waited):.0f} s" if waited else "not back"
    return f"{row['verdict']} {float(row['recovery_s']):.1f} s"


def heatmap_svg(client: str, rows: Sequence[dict[str, str]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from comparison.charts import svg

    loads = sorted({float(row["load"]) for row in rows})
    triggers = sorted({float(row["trigger_s"]) for row in rows})
    figure, axes = plt.subplots(figsize=(1.4 * len(triggers) + 1.6, 0.8 * len(loads) + 1.2))
    for row in rows:
        x, y = triggers.index(float(row["trigger_s"])), loads.index(float(row["load"]))
        axes.add_patch(Rectangle((x, y), 1, 1, color=COLOURS[row["verdict"]], ec="white", lw=2))
        label = _label(row).replace(" after ", "\nafter ")
        axes.text(x + 0.5, y + 0.5, label, ha="center", va="center", fontsize=8)
    axes.set_xlim(0, len(triggers))
    axes.set_ylim(0, len(loads))
    axes.set_xticks([i + 0.5 for i in range(len(triggers))], [f"{t:g} s" for t in triggers])
    axes.set_yticks([i + 0.5 for i in range(len(loads))], [f"{x:g} x C" for x in loads])
    axes.set_xlabel("trigger length")
    axes.set_ylabel("offered load")
    axes.set_title(f"{client}: recovery after the trigger", fontsize=10)
    figure.tight_layout()
    return svg(figure, "heatmap-" + client)


def write_report(path: Path, title: str, rows: Sequence[dict[str, str]], intro: str) -> None:
    from comparison.charts import STYLE

    parts = []
    for client in dict.fromkeys(row["client"] for row in rows):
        mine = [row for row in rows if row["client"] == client]
        parts.append(f"<h2>{html.escape(client)}</h2>")
        svg = heatmap_svg(client, mine)
        parts.append(f'<div class="chart heatmap" id="heatmap-{html.escape(client)}">{svg}</div>')
    legend = ", ".join(f'<span style="color:{c}">&#9632;</span> {k}' for k, c in COLOURS.items())
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{STYLE}</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="meta">{html.escape(intro)}</p>
<p>{legend}</p>
{"".join(parts)}
</body></html>
"""
    path.write_text(page, encoding="utf-8")


class _Quiet(io.StringIO):
    def isatty(self) -> bool:
        return False


def run_map(config, runner, cell_scenario: str, out: TextIO = sys.stdout, argv: list[str] | None = None):
    """Run every cell, a run of `cell_scenario`, with the runner's parts (`runner` is comparison.runner,
    passed in so that this module does not import it back) and write the grid; returns a RunOutcome."""
    from comparison.readers import ClassFiles, read_client
    from comparison.signals import Interrupted, SignalGuard
    from comparison.summary import read_server, wasted_ratio

    EmbeddedTarget, RunFailed, RunOutcome, RunRecord = (
        runner.EmbeddedTarget, runner.RunFailed, runner.RunOutcome, runner.RunRecord,
    )  # fmt: skip
    options: MetastableOptions = config.scenario_options
    loads, triggers = options.loads, options.triggers
    runner.check_clients(config)
    run_dir = runner.run_dir_for(config)
    runner.point_latest(run_dir)
    record = RunRecord(
        scenario=config.scenario, clients=list(config.clients), command=runner.command_line(argv or sys.argv),
        started_utc=datetime.now(UTC).isoformat(timespec="seconds"), machine=runner.machine(),
        target="embedded: python -m target_server, restarted for every cell",
    )  # fmt: skip
    total = len(config.clients) * len(loads) * len(triggers)
    out.write(
        f"phase map: {len(loads)} loads x {len(triggers)} triggers x {len(config.clients)} clients = {total} "
        f"runs, each {options.pre_s:g} s + trigger + {options.after_s:g} s; writing {run_dir}\n"
    )
    embedded = EmbeddedTarget()
    cells: list[Cell] = []
    exit_code = 0
    guard = SignalGuard()
    started = time.monotonic()
    with guard:
        try:
            probe_config = dataclasses.replace(config, scenario=cell_scenario, rate_multiplier=1.0)
            base = runner.measure_and_plan(probe_config, embedded, run_dir, record, out, guard)
            capacity = base.capacity_rps
            index = 0
            for client in config.clients:
                for load in loads:
                    for trigger in triggers:
                        index += 1
                        cell_options = dataclasses.replace(options, trigger_s=trigger)
                        cell_config = dataclasses.replace(
                            config, scenario=cell_scenario, rate_multiplier=load, capacity=capacity,
                            scenario_options=cell_options, duration_s=cell_options.duration_s,
                            drain_s=MAP_DRAIN_S,
                        )  # fmt: skip
                        name = f"{client}-L{load:g}-T{trigger:g}"
                        cell_dir = run_dir / "cells" / name
                        cell_dir.mkdir(parents=True)
                        mine = dataclasses.replace(record, capacity={}, classes={}, notes=[])
                        plan = runner.measure_and_plan(cell_config, embedded, cell_dir, mine, _Quiet(), guard)
                        result = runner.run_class(cell_config, plan, embedded, cell_dir, mine, client, index,
                                            _Quiet(), total)  # fmt: skip
                        files = ClassFiles(cell_dir / client)
                        rows = read_client(files.mitigations, client)
                        phases = judge_rows(rows, result.capacity_change, cell_options)
                        cell = Cell(client, load, trigger, plan.offered_rps, phases.pre_rps, phases.post_rps,
                                    phases.recovered, phases.recovery_s, phases.peak_share, phases.verdict,
                                    wasted_ratio(read_server(files.server)), phases.waited_s)  # fmt: skip
                        cells.append(cell)
                        write_grid(cells, run_dir / "phase_map.csv")
                        elapsed = time.monotonic() - started
                        said = f"{client} at {load:g} x C, trigger {trigger:g} s: {_label(cell.row())}"
                        out.write(f"cell {index} of {total}: {said} ({elapsed:.0f} s so far)\n")
                        out.flush()
        except Interrupted as interrupt:
            exit_code = interrupt.exit_code
            record.interrupted = True
        except Exception as error:  # LocustFailed, TargetError: one line
            if isinstance(error, RunFailed):
                raise
            raise RunFailed(str(error)) from None
        finally:
            embedded.stop()
            record.finished_utc = datetime.now(UTC).isoformat(timespec="seconds")
            record.save(run_dir / "run.json")
    write_grid(cells, run_dir / "phase_map.csv")
    rows = read_grid(run_dir / "phase_map.csv")
    title = f"Hammerlab phase map, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    intro = (f"C = {record.capacity.get('capacity_rps', 0):.1f} requests/s. Each cell: "
             f"{options.pre_s:g} s steady, a {options.trigger_kind} trigger of the column's length, "
             f"{options.after_s:g} s after; {RULE}; quick: back within {options.quick_s:g} s. "
             f"Took {time.monotonic() - started:.0f} s. Command: {record.command}")  # fmt: skip
    table = markdown(rows)
    (run_dir / "phase_map.md").write_text(f"# {title}\n\n{intro}\n\n{table}\n", encoding="utf-8")
    report = run_dir / "report.html"
    if rows:
        write_report(report, title, rows, intro)
    out.write("\n" + table + "\n")
    out.write(f"grid:    {run_dir / 'phase_map.csv'}\nreport:  {report}\n")
    return RunOutcome(run_dir, [], exit_code, report if rows else None)
