"""The comparison run, start to end: target, capacity, one Locust process per class, summary, report.

Isolation between classes: with the embedded target, every class gets a freshly started server (a new
process on a new port), so no class inherits the previous one's kernel accept queue, half-dead
sockets, smoothed lag or counters. With `--host`, the runner can only clear the faults, reset the
counters and wait for the server to drain, and says so in the notes.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from comparison.classes import check_clients, locust_passthrough
from comparison.config import MIX, RunConfig, build_plan
from comparison.locust_run import LocustFailed, Progress, run_locust
from comparison.outputs import write_empty_summary, write_outputs
from comparison.own_service import ServiceOptions
from comparison.plan import LoadPlan
from comparison.readers import ClassFiles
from comparison.run_record import (
    RunFailed,
    RunRecord,
    command_line,
    describe_run,
    machine,
    point_latest,
    run_dir_for,
)
from comparison.scenarios import scenario_of
from comparison.signals import Interrupted, SignalGuard
from comparison.summary import ClassResult, Summary
from comparison.tables import terminal_table
from comparison.target import (
    EmbeddedTarget,
    TargetError,
    change_capacity,
    reset_target,
    sync_work_ms,
    wait_for_overrides_to_end,
)
from comparison.target_kind import inspect, scenario_problem
from comparison.user_locustfile import locustfile_arg
from mitigations.guard import STOP_LOSS_EXIT, remote_problem

# what comparison/phase_map.py's grid uses of the runner, besides `measure_and_plan` and `run_class`
# and of what comparison/scenarios/sweep.py's points use (the target's kind, the guard, the signals)
__all__ = ["EmbeddedTarget", "Interrupted", "RunFailed", "RunOutcome", "RunRecord", "ServiceOptions",
           "SignalGuard", "TargetError", "check_clients", "command_line", "describe_run", "inspect",
           "machine", "point_latest", "remote_problem", "run", "run_dir_for"]  # fmt: skip


class StopLossTripped(RuntimeError):
    """A class's Locust process stopped itself on an --abort-on condition; the run stops after it."""

    def __init__(self, line: str, result: ClassResult) -> None:
        super().__init__(line)
        self.result = result


@dataclass
class RunOutcome:
    run_dir: Path
    summaries: list[Summary]
    exit_code: int
    report: Path | None


def _classes(count: int) -> str:
    return f"{count} class" if count == 1 else f"{count} classes"


def say(out: TextIO, text: str) -> None:
    out.write(text + "\n")
    out.flush()


def run(config: RunConfig, out: TextIO = sys.stdout, argv: list[str] | None = None) -> RunOutcome:
    """Run every class. Raises RunFailed for a run that cannot go on; an interrupt is a RunOutcome."""
    from comparison.rerun import reproduction

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
        f"comparison: scenario {config.scenario} ({scenario_of(config.scenario).help}), "
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
            plan = measure_and_plan(config, embedded, run_dir, record, out, guard, hammerlab)
            units = [MIX] if config.mix else list(config.clients)
            for index, client in enumerate(units, start=1):
                try:
                    result = run_class(
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
                write_empty_summary(run_dir, record, plan)
            return RunOutcome(run_dir, [], exit_code or 1, None)
        summaries, report, extra_lines = write_outputs(run_dir, config, plan, results, record)
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


def measure_and_plan(
    config: RunConfig,
    embedded: EmbeddedTarget | None,
    run_dir: Path,
    record: RunRecord,
    out: TextIO,
    guard: SignalGuard,
    hammerlab: bool = True,
) -> LoadPlan:
    reduced: float | None = None
    factor = scenario_of(config.scenario).work_factor
    if config.capacity is not None:
        capacity = config.capacity
        record.capacity = {"capacity_rps": capacity, "source": "--capacity"}
        say(out, f"capacity C = {capacity:g} requests/s (given with --capacity; no probe)")
        if factor is not None:
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
            if factor is not None:
                reduced = _probe_reduced(config, factor, url, record, out, guard)
        except ProbeError as error:
            raise RunFailed(str(error)) from None
        finally:
            if embedded is not None:
                embedded.stop()
    prepared = scenario_of(config.scenario).prepare(config, build_plan(config, capacity, reduced), capacity)
    plan = prepared.plan
    own = ("--priority-shedding",) if config.priority_shedding else ()  # after the probe: C is the plain one
    if embedded is not None and (prepared.target_args or own):  # the scenario's own target, and the run's
        embedded.extra_args = (*prepared.target_args, *own)
        record.target += " " + " ".join(embedded.extra_args)
    if prepared.note:
        record.notes.append(prepared.note)
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
    if config.external is not None:
        command = config.external.worker_command(locustfile_arg(config.locustfile), config.allow_remote)
        say(
            out,
            f"  each class's master waits up to {config.external.wait_s} s for {config.external.count} "
            f"external workers at {config.external.address()}; on each worker host run: {command}",
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


def _probe_reduced(
    config: RunConfig, factor: float, url: str, record: RunRecord, out: TextIO, guard: SignalGuard
) -> float:
    """A capacity scenario's second probe: C while sync_work_ms is `factor` times the target's,
    set through /admin/config for just the probe's length, so the server reverts by itself."""
    from comparison.probe import WARMUP_S, measure_capacity

    remote = (config.service or ServiceOptions()).allow_remote
    work = sync_work_ms(url, remote)
    if work <= 0:
        raise RunFailed(
            f"the {config.scenario} scenario needs a target with sync_work_ms > 0; {url} has {work:g}"
        )
    length = WARMUP_S + config.probe_s + 1.0
    change_capacity(url, work * factor, length)
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


def run_class(
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
        state = reset_target(url, remote)
        say(out, f"class {index} of {total}: {_label(config, client)}; target {url} {state}")
        if state != "reset" and (note := f"The target {url} was {state}.") not in record.notes:
            record.notes.append(note)
    else:
        url = config.host  # type: ignore[assignment]
        say(out, f"class {index} of {total}: {_label(config, client)}; target {url}")
    record.save(run_dir / "run.json")

    scenario = scenario_of(plan.scenario)
    event = scenario.event(url, plan, config, entry)

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
            locustfile=config.locustfile,
            external=config.external,
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
        return scenario.result(client, files, result.event)
    if result.stop_loss:
        entry["stop_loss"] = result.stop_loss
        raise StopLossTripped(result.stop_loss, scenario.result(client, files, result.event))
    return scenario.result(client, files, result.event)


def _label(config: RunConfig, client: str) -> str:
    if not config.mix:
        return client
    return f"{client} of " + ", ".join(f"{name} x {users}" for name, users in config.mix)
