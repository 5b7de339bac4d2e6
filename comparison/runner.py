"""The comparison run, start to end: target, capacity, one Locust process per class, summary, report.

Isolation between classes: with the embedded target, every class gets a freshly started server (a new
process on a new port), so no class inherits the previous one's kernel accept queue, half-dead
sockets, smoothed lag or counters. With `--host`, the runner can only clear the faults, reset the
counters and wait for the server to drain, and says so in the notes.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

from comparison import ROOT
from comparison.config import MIX, SCENARIOS, WORK_FACTORS, ConfigError, LoadPlan, RunConfig
from comparison.locust_run import LOCUST, LocustFailed, Progress, run_locust
from comparison.narrative import describe
from comparison.own_service import ServiceOptions
from comparison.readers import ClassFiles
from comparison.signals import Interrupted, SignalGuard
from comparison.summary import ClassResult, Summary, summarise, write_csv
from comparison.tables import terminal_table, write_markdown
from comparison.target import (
    EmbeddedTarget,
    TargetError,
    change_capacity,
    inject_outage,
    reset_target,
    sync_work_ms,
    wait_for_overrides_to_end,
)
from mitigations.guard import STOP_LOSS_EXIT, remote_problem


class StopLossTripped(RuntimeError):
    """A class's Locust process stopped itself on an --abort-on condition; the run stops after it."""

    def __init__(self, line: str, result: ClassResult) -> None:
        super().__init__(line)
        self.result = result


class RunFailed(RuntimeError):
    """The run cannot go on; the message is one line. `usage` marks a bad input (exit 2)."""

    def __init__(self, message: str, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


def available_clients(passthrough: tuple[str, ...] = ()) -> list[str]:
    """The user classes Locust itself finds in locustfiles/ (`locust --list`), in its order. The
    options after `--` go along, so Locust's own parser checks every value before anything starts."""
    result = subprocess.run(
        [str(LOCUST), "-f", "locustfiles", "--list", *passthrough],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        if result.returncode == 2 and passthrough:
            raise RunFailed(f"after --: {last.removeprefix('locust: error: ')}", usage=True)
        raise RunFailed(f"locust --list failed: {last}")
    return [line.strip() for line in result.stdout.splitlines()[1:] if line.startswith(" ")]


def locust_passthrough(config: RunConfig) -> tuple[str, ...]:
    """What every Locust process gets after the runner's own options: the request, the guard rails,
    then the user's passthrough."""
    return (*(config.service or ServiceOptions()).locust_args(), *config.passthrough)


def check_clients(config: RunConfig) -> None:
    known = available_clients(locust_passthrough(config))
    for name in config.clients:
        if name not in known:
            raise ConfigError(
                "--clients", f"{name!r} is not a user class in locustfiles/; known: {', '.join(known)}"
            )


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


@dataclass
class RunOutcome:
    run_dir: Path
    summaries: list[Summary]
    exit_code: int
    report: Path | None


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


def _classes(count: int) -> str:
    return f"{count} class" if count == 1 else f"{count} classes"


def say(out: TextIO, text: str) -> None:
    out.write(text + "\n")
    out.flush()


def run(config: RunConfig, out: TextIO = sys.stdout, argv: list[str] | None = None) -> RunOutcome:
    """Run every class. Raises RunFailed for a run that cannot go on; an interrupt is a RunOutcome."""
    from comparison.rerun import reproduction
    from comparison.target_kind import inspect, scenario_problem

    service = config.service or ServiceOptions()
    if config.host and (problem := remote_problem(config.host, service.allow_remote)):
        raise RunFailed(problem, usage=True)  # before any socket to it is opened
    check_clients(config)
    kind = None
    if config.host:
        try:
            kind = inspect(config.host, service.request(), service.allow_remote)
        except (TargetError, ValueError) as error:
            raise RunFailed(str(error), usage=True) from None
        if not kind.hammerlab and (problem := scenario_problem(config.scenario, config.host)):
            raise RunFailed(problem, usage=True)
    run_dir = run_dir_for(config)
    point_latest(run_dir)  # from the start, so an interrupt at any point leaves latest on this run
    record = RunRecord(
        scenario=config.scenario,
        clients=list(config.clients),
        command=command_line(argv or sys.argv),
        started_utc=datetime.now(UTC).isoformat(timespec="seconds"),
        machine=machine(),
        target=config.host or EmbeddedTarget(workers=config.target_workers).describe,
        reproduce=reproduction(config, argv or sys.argv, kind),
    )
    say(
        out,
        f"comparison: scenario {config.scenario} ({SCENARIOS[config.scenario]}), "
        f"{_classes(len(config.clients))} x {config.duration_s:g} s, writing {run_dir}",
    )
    if kind is not None and not kind.hammerlab:
        off = kind.off_line(config.host, service.server_metrics)  # type: ignore[arg-type]
        say(out, off)
        record.notes.append(off + ".")
    elif config.host:
        record.notes.append(
            f"Ran against {config.host}: between classes the runner cleared faults, reset the counters "
            "and waited for the server to drain, but could not restart it."
        )
    embedded = None if config.host else EmbeddedTarget(workers=config.target_workers)
    results: list[ClassResult] = []
    plan: LoadPlan | None = None
    exit_code = 0
    guard = SignalGuard()
    with guard:
        try:
            hammerlab = kind is None or kind.hammerlab
            plan = _measure_and_plan(config, embedded, run_dir, record, out, guard, hammerlab)
            units = [MIX] if config.mix else list(config.clients)
            for index, client in enumerate(units, start=1):
                try:
                    result = _run_class(
                        config, plan, embedded, run_dir, record, client, index, out, len(units), hammerlab
                    )
                except StopLossTripped as tripped:
                    results.append(tripped.result)
                    exit_code = STOP_LOSS_EXIT
                    record.notes.append(f"{client}: {tripped}; the classes after it did not run.")
                    say(out, f"\ncomparison: {client}: {tripped}")
                    break
                if config.mix:  # one Locust run whose files hold every class: one result per class
                    results.extend(replace(result, client=name) for name in config.clients)
                else:
                    results.append(result)
                record.save(run_dir / "run.json")
        except Interrupted as interrupt:
            exit_code = interrupt.exit_code
            record.interrupted = True
            if plan is not None:
                record.notes.append(
                    f"Interrupted ({interrupt}) during class {len(results) + 1} of {len(config.clients)}; "
                    f"the table has the {len(results)} that finished."
                )
        except (LocustFailed, TargetError) as error:
            raise RunFailed(str(error), usage=getattr(error, "usage", False)) from None
        finally:
            guard.cleaning = True
            if embedded is not None:
                embedded.stop()
            guard.cleaned()
            record.finished_utc = datetime.now(UTC).isoformat(timespec="seconds")
            record.save(run_dir / "run.json")
        if exit_code and exit_code != STOP_LOSS_EXIT:
            say(
                out,
                f"\ncomparison: interrupted; stopped every child process. Kept {_classes(len(results))} "
                f"that finished in {run_dir}",
            )
        if plan is None or not results:
            if exit_code:
                _write_empty_summary(run_dir, record, plan)
            return RunOutcome(run_dir, [], exit_code or 1, None)
        summaries, report, extra_lines = _write_outputs(run_dir, plan, results, record)
    say(out, "")
    say(out, terminal_table(summaries))
    for line in extra_lines:
        say(out, line)
    for summary in summaries:
        if note := summary.skipped_note():
            say(out, f"warning: {note}")
    say(out, "")
    say(out, f"summary: {run_dir / 'summary.md'}")
    say(out, f"report:  {report}")
    return RunOutcome(run_dir, summaries, exit_code, report)


def _measure_and_plan(
    config: RunConfig,
    embedded: EmbeddedTarget | None,
    run_dir: Path,
    record: RunRecord,
    out: TextIO,
    guard: SignalGuard,
    hammerlab: bool = True,
) -> LoadPlan:
    reduced: float | None = None
    if config.capacity is not None:
        capacity = config.capacity
        record.capacity = {"capacity_rps": capacity, "source": "--capacity"}
        say(out, f"capacity C = {capacity:g} requests/s (given with --capacity; no probe)")
        if config.scenario in WORK_FACTORS:
            factor = WORK_FACTORS[config.scenario]
            reduced = capacity / factor
            record.capacity["reduced"] = {"capacity_rps": reduced, "source": f"--capacity / {factor:g}"}
            record.notes.append(
                f"The changed capacity {reduced:.1f} requests/s is C / {factor:g}, an estimate: "
                "--capacity skips the probe that would measure it."
            )
            say(out, f"changed capacity C' = {reduced:.1f} requests/s (estimated as C / {factor:g})")
    elif not hammerlab:
        capacity = _ramp(config, record, out, guard)
    else:
        from comparison.probe import ProbeError, measure_capacity  # gevent only when probing

        url = config.host or embedded.start(run_dir / "probe_target.log")  # type: ignore[union-attr]
        service = config.service or ServiceOptions()
        request = service.request()
        try:
            with guard.deferred():
                probe = measure_capacity(
                    url, config.probe_s, should_stop=guard.pending, request=request,
                    allow_remote=service.allow_remote,
                )  # fmt: skip
            capacity = probe.capacity_rps
            record.capacity = {**asdict(probe), "source": "closed-loop probe"}
            say(out, probe.describe())
            if config.scenario in WORK_FACTORS:
                reduced = _probe_reduced(config, url, record, out, guard)
        except ProbeError as error:
            raise RunFailed(str(error)) from None
        finally:
            if embedded is not None:
                embedded.stop()
    plan = LoadPlan.build(config, capacity, reduced)
    if config.metastable is not None:
        plan = plan.with_trigger(config.metastable.pre_s, config.metastable.trigger_s)
        if embedded is not None:  # the model's target: its queue sized from C, its checks as asked
            embedded.extra_args = config.metastable.target_args(capacity)
            record.target += " " + " ".join(embedded.extra_args)
        record.notes.append(f"Metastable phases: {config.metastable.describe()}.")
    record.plan = asdict(plan)
    ratio = plan.offered_rps / capacity
    whom = "in total, shared by the mix" if plan.mix else "to each class"
    say(out, f"offering {plan.offered_rps:.1f} requests/s ({ratio:.2f} x C) {whom}")
    if plan.workers > 1:
        say(
            out,
            f"  as {plan.workers} Locust workers (client instances), each offering "
            f"{plan.offered_rps / plan.workers:.1f} requests/s: {plan.users} users launching "
            f"{plan.launch_rate:.2f} requests/s each",
        )
    return plan


def _ramp(config: RunConfig, record: RunRecord, out: TextIO, guard: SignalGuard) -> float:
    """The gentle ramp for a service that is not Hammerlab's (comparison/probe_ramp.py)."""
    from comparison.probe_ramp import RampError, ramp

    service = config.service or ServiceOptions()
    step_s = min(10.0, max(0.5, config.probe_s / 3))
    try:
        with guard.deferred():
            result = ramp(
                config.host,  # type: ignore[arg-type]
                service.request(),
                config.slo_ms,
                service.max_probe_rps,
                step_s,
                should_stop=guard.pending,
                allow_remote=service.allow_remote,
            )
    except RampError as error:
        raise RunFailed(str(error)) from None
    record.capacity = result.record()
    say(out, result.describe())
    return result.capacity_rps


def _probe_reduced(config: RunConfig, url: str, record: RunRecord, out: TextIO, guard: SignalGuard) -> float:
    """The capacity scenario's second probe: C while sync_work_ms is WORK_FACTOR times the target's,
    set through /admin/config for just the probe's length, so the server reverts by itself."""
    from comparison.probe import WARMUP_S, measure_capacity

    remote = (config.service or ServiceOptions()).allow_remote
    work = sync_work_ms(url, remote)
    if work <= 0:
        raise RunFailed(f"the capacity scenario needs a target with sync_work_ms > 0; {url} has {work:g}")
    length = WARMUP_S + config.probe_s + 1.0
    factor = WORK_FACTORS[config.scenario]
    change_capacity(url, work * factor, length, remote)
    with guard.deferred():
        probe = measure_capacity(url, config.probe_s, should_stop=guard.pending, allow_remote=remote)
    wait_for_overrides_to_end(url, length + 5.0, remote)
    record.capacity["reduced"] = {
        **asdict(probe),
        "source": f"closed-loop probe with sync_work_ms {work:g} -> {work * factor:g}",
    }
    say(
        out,
        f"changed capacity C' = {probe.capacity_rps:.1f} requests/s with sync_work_ms {work:g} -> "
        f"{work * factor:g} ({probe.ok} ok, {probe.failed} failed in {probe.seconds:.1f} s)",
    )
    return probe.capacity_rps


def _run_class(
    config: RunConfig,
    plan: LoadPlan,
    embedded: EmbeddedTarget | None,
    run_dir: Path,
    record: RunRecord,
    client: str,
    index: int,
    out: TextIO,
    total: int,
    hammerlab: bool = True,
) -> ClassResult:
    files = ClassFiles(run_dir / client)
    entry: dict[str, Any] = record.classes.setdefault(client, {})
    remote = (config.service or ServiceOptions()).allow_remote  # the comparison's own --allow-remote
    if embedded is not None:
        url = embedded.start(files.target_log)
        entry["target_pid"] = embedded.pid
        say(out, f"class {index} of {total}: {_label(config, client)}; target pid {embedded.pid} at {url}")
    elif hammerlab:
        url = config.host  # type: ignore[assignment]
        reset_target(url, remote)
        say(out, f"class {index} of {total}: {_label(config, client)}; target {url} reset")
    else:
        url = config.host  # type: ignore[assignment]
        say(out, f"class {index} of {total}: {_label(config, client)}; target {url}")
    record.save(run_dir / "run.json")

    def outage() -> tuple[float, float]:
        window = inject_outage(url, plan.outage_s or 0, remote)
        entry["outage"] = list(window)
        return window

    def capacity_change() -> tuple[float, float]:
        work = sync_work_ms(url, remote)
        factor = WORK_FACTORS[plan.scenario]
        window = change_capacity(url, work * factor, plan.capacity_change_s or 0, remote)
        entry["capacity_change"] = {"window": list(window), "sync_work_ms": [work, work * factor]}
        return window

    event = outage if plan.outage_s else capacity_change if plan.capacity_change_s else None
    if config.metastable is not None and plan.capacity_change_s:
        from comparison.metastable import trigger_window

        def trigger() -> tuple[float, float]:
            window = trigger_window(url, config.metastable, remote)  # type: ignore[arg-type]
            kind = config.metastable.trigger_kind  # type: ignore[union-attr]
            entry["trigger"] = {"window": list(window), "kind": kind}
            return window

        event = trigger

    def started(pid: int) -> None:
        entry["locust_pid"] = pid
        record.save(run_dir / "run.json")
        say(out, f"  locust pid {pid}")

    shown = config.clients[0] if config.mix else client  # a mix's progress line follows its first class
    progress = Progress(out, shown, index, total, plan.duration_s, _label(config, client))
    try:
        result = run_locust(
            client,
            files,
            url,
            plan,
            locust_passthrough(config),
            progress,
            inject=event,
            on_start=started,
        )
    finally:
        if embedded is not None:
            embedded.stop()
    entry["returncode"] = result.returncode
    entry["finished_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
    missing = [p.name for p in files.sampler_files() if not p.exists() and (hammerlab or p != files.server)]
    if missing:
        record.notes.append(
            f"{client}: no {', '.join(missing)} (the sampler wrote nothing); "
            "server and client columns are empty."
        )
    if plan.capacity_change_s:
        return ClassResult(client, files, capacity_change=result.event)
    if result.stop_loss:
        entry["stop_loss"] = result.stop_loss
        raise StopLossTripped(result.stop_loss, ClassResult(client, files, result.event))
    return ClassResult(client, files, result.event)


def _label(config: RunConfig, client: str) -> str:
    if not config.mix:
        return client
    return f"{client} of " + ", ".join(f"{name} x {users}" for name, users in config.mix)


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


def _metastable_options(record: RunRecord):  # -> MetastableOptions | None
    """The metastable options of this run, from what run.json keeps of the command's options."""
    kept = record.reproduce.get("options", {}).get("metastable")
    if not kept:
        return None
    from comparison.metastable import MetastableOptions

    return MetastableOptions(**kept)


def _write_empty_summary(run_dir: Path, record: RunRecord, plan: LoadPlan | None) -> None:
    """summary.md and summary.csv for a run interrupted before any class finished: they say so."""
    stage = "while measuring the capacity" if plan is None else "in the first class"
    record.notes.append(f"Interrupted {stage}: no class finished, so there is nothing to compare.")
    write_csv([], run_dir / "summary.csv")
    title = f"Hammerlab comparison: {record.scenario}, interrupted before any class finished"
    intro = describe_run(record) if record.capacity else f"Command: `{record.command}`."
    write_markdown(run_dir / "summary.md", title, intro, [], [], record.notes)
    record.save(run_dir / "run.json")


def _write_outputs(
    run_dir: Path, plan: LoadPlan, results: list[ClassResult], record: RunRecord
) -> tuple[list[Summary], Path, list[str]]:
    from comparison import mix  # the groups of a --mix run side by side

    summaries = [mix.adjust(summarise(result, plan), plan) for result in results]
    options = _metastable_options(record)
    if options is not None:
        from comparison.metastable import adjust

        summaries = [adjust(s, result, options) for s, result in zip(summaries, results, strict=True)]
    record.notes.extend(note for summary in summaries if (note := summary.skipped_note()))
    write_csv(summaries, run_dir / "summary.csv")
    sentences = mix.describe(results, summaries, plan) if plan.mix else describe(summaries, plan)
    title = f"Hammerlab comparison: {plan.scenario}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    write_markdown(run_dir / "summary.md", title, describe_run(record), summaries, sentences, record.notes)
    if record.capacity.get("source") == "ramp probe":
        from comparison.probe_ramp import markdown

        with (run_dir / "summary.md").open("a", encoding="utf-8") as handle:
            handle.write("\n" + markdown(record.capacity))
    from comparison.fleet import write_outputs as write_fleet  # per-instance views, --workers > 1
    from comparison.report import series_for, write_report  # matplotlib only once there is something to draw

    lines, fleets, judged = write_fleet(run_dir, plan, results, summaries)
    sections = ""
    if fleets:
        from comparison.fleet_report import fleet_section

        sections += fleet_section(plan, fleets, judged)
    if options is not None:
        from comparison.metastable_report import metastable_section

        sections += metastable_section(plan, results, summaries, options)
    mix_lines, mix_section = mix.write_outputs(run_dir, plan, results, summaries)
    lines, sections = [*lines, *mix_lines], sections + mix_section
    baseline = record.reproduce.get("options", {}).get("service", {}).get("baseline")
    if baseline:
        from comparison.baseline import load, section

        sections += section(plan, [series_for(r) for r in results], summaries, load(Path(baseline)))
    report = run_dir / "report.html"
    write_report(report, title, plan, results, summaries, sentences, asdict(record), sections)
    record.save(run_dir / "run.json")
    return summaries, report, lines
