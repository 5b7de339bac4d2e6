"""What a finished run writes: summary.csv, summary.md, report.html and the fleet and mix views.

The shared parts are the same for every scenario; the scenario adds its columns (`adjust`), its
sentences (through the narrative), its part of summary.md (`markdown`) and its section of report.html
(`section`). A run interrupted before any class finished still writes a summary that says so.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from comparison import criticality
from comparison.lost_workers import lost_workers
from comparison.lost_workers import note as lost_note
from comparison.narrative import describe
from comparison.plan import LoadPlan
from comparison.readers import read_instances
from comparison.run_record import RunRecord, describe_run
from comparison.scenarios import scenario_of
from comparison.summary import ClassResult, Summary, summarise, write_csv
from comparison.tables import write_markdown


def write_empty_summary(run_dir: Path, record: RunRecord, plan: LoadPlan | None) -> None:
    """summary.md and summary.csv for a run interrupted before any class finished: they say so."""
    stage = "while measuring the capacity" if plan is None else "in the first class"
    record.notes.append(f"Interrupted {stage}: no class finished, so there is nothing to compare.")
    write_csv([], run_dir / "summary.csv")
    title = f"Hammerlab comparison: {record.scenario}, interrupted before any class finished"
    intro = describe_run(record) if record.capacity else f"Command: `{record.command}`."
    write_markdown(run_dir / "summary.md", title, intro, [], [], record.notes)
    record.save(run_dir / "run.json")


def write_outputs(
    run_dir: Path, config: Any, plan: LoadPlan, results: list[ClassResult], record: RunRecord
) -> tuple[list[Summary], Path, list[str]]:
    """Every output of a run whose classes finished; returns the summaries, report.html and the lines
    the terminal prints after the table."""
    from comparison import mix  # the groups of a --mix run side by side

    scenario = scenario_of(plan.scenario)
    summaries = [
        mix.adjust(scenario.adjust(summarise(result, plan), result, plan, config), plan) for result in results
    ]
    record.notes.extend(note for summary in summaries if (note := summary.skipped_note()))
    record.notes.extend(
        lost_note(r.client, lost)
        for r in results
        for lost in lost_workers(read_instances(r.files.mitigations, r.client))
    )
    write_csv(summaries, run_dir / "summary.csv")
    sentences = mix.describe(results, summaries, plan) if plan.mix else describe(summaries, plan)
    title = f"Hammerlab comparison: {plan.scenario}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    write_markdown(run_dir / "summary.md", title, describe_run(record), summaries, sentences, record.notes)
    if record.capacity.get("source") == "ramp probe":
        from comparison.probe_ramp import markdown

        with (run_dir / "summary.md").open("a", encoding="utf-8") as handle:
            handle.write("\n" + markdown(record.capacity))
    own = scenario.markdown(run_dir, plan, results, summaries) + criticality.markdown(summaries)
    if own:
        with (run_dir / "summary.md").open("a", encoding="utf-8") as handle:
            handle.write("\n" + own)
    from comparison.fleet import write_outputs as write_fleet  # per-instance views, --workers > 1
    from comparison.report import write_report  # matplotlib only once there is something to draw

    lines, fleets, judged = write_fleet(run_dir, plan, results, summaries, scenario.judges_fleet)
    sections = ""
    if fleets:
        from comparison.fleet_report import fleet_section

        sections += fleet_section(plan, fleets, judged)
    sections += scenario.section(plan, results, summaries, config) + criticality.html_section(summaries)
    mix_lines, mix_section = mix.write_outputs(run_dir, plan, results, summaries)
    lines, sections = [*lines, *mix_lines], sections + mix_section
    baseline = record.reproduce.get("options", {}).get("service", {}).get("baseline")
    if baseline:
        from comparison.baseline import BaselineError, load, section, unreadable_section
        from comparison.charts import series_for

        try:
            sections += section(plan, [series_for(r) for r in results], summaries, load(Path(baseline)))
        except BaselineError as error:  # changed since the start-up check: say so, keep the report
            sections += unreadable_section(Path(baseline), str(error))
    report = run_dir / "report.html"
    write_report(report, title, plan, results, summaries, sentences, asdict(record), sections)
    record.save(run_dir / "run.json")
    return summaries, report, lines
