"""Golden outputs: every file a run writes (summary.csv, summary.md, report.html's text, fleet and mix
files), for each scenario, from fixed inputs. A refactor of comparison/ must leave them byte for byte
as they are; only the SVG charts (matplotlib's bytes) and the title's clock are masked.

`GOLDEN_UPDATE=1 pytest tests/test_golden_outputs.py` rewrites tests/golden/ after a change that is
meant to change an output.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from comparison.config import RunConfig, build_plan
from comparison.readers import ClassFiles
from comparison.summary import ClassResult

GOLDEN = Path(__file__).with_name("golden")
UPDATE = os.environ.get("GOLDEN_UPDATE") == "1"
START = 1_000_000.0  # the unix time at which every fixture test starts

STATS_HEADER = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,"
    "Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,"
    "99.99%,100%"
)
SERVER_HEADER = (
    "timestamp,elapsed_s,lag_ms,in_flight,concurrent,sockets,requests_total,completed_total,rejected_total,"
    "errors_total,completed_per_s,rejected_per_s,errors_per_s,faults,peak_lag_ms,peak_in_flight,peak_sockets,"
    "work_cpu_ms_total,wasted_cpu_ms_total"
)
MITIGATIONS_HEADER = (
    "timestamp,elapsed_s,worker,client,concurrent,max_concurrent,launched_total,launched_per_s,"
    "completed_total,wire_total,wire_failures_total,shed_total,shed_per_s,shed_by_cause,breaker_state,"
    "breaker_transitions_total,limit,throttle_in_flight,queue_depth,pool_in_use,pool_waiting,timeouts_total,"
    "ok_total,server_errors_total,server_error_kinds,unfinished_total,skipped_total,slo_ms,slo_ok_total,"
    "p50_ms,p95_ms,p99_ms,p999_ms,max_ms"
)
CLIENTS = ("HammerClient", "ThrottledClient", "AdaptiveClient")


def rate_at(client_index: int, t: float, duration: float, dip: tuple[float, float] | None) -> float:
    """A fixed goodput curve per class: each class a little different, a dip in the event's window."""
    base = 40.0 + 10.0 * client_index + 5.0 * ((int(t * 2) % 5) - 2)
    if dip and dip[0] <= t < dip[1]:
        return base * (0.1 + 0.2 * client_index)
    if dip and dip[1] <= t < dip[1] + 1.5 * (client_index + 1):
        return base * 0.5
    return base


def write_class(
    files: ClassFiles,
    client: str,
    index: int,
    duration: float,
    dip: tuple[float, float] | None,
    workers: tuple[str, ...] = ("local",),
    others: tuple[str, ...] = (),
) -> None:
    """PREFIX_stats.csv, _server.csv and _mitigations.csv as a class's run would leave them."""
    files.prefix.parent.mkdir(parents=True, exist_ok=True)
    step = 0.5
    rows: list[str] = []
    server: list[str] = []
    totals = {name: [0.0] * 6 for name in (client, *others)}
    n = int(duration / step) + 1
    for i in range(n):
        t = i * step
        for k, name in enumerate((client, *others)):
            rate = rate_at(index + k, t, duration, dip)
            good, launched_total, wire, failed, shed, slo = totals[name]
            launched_total += 60.0 * step
            good += rate * step
            failed += (60.0 - rate) * step * 0.5
            shed += (60.0 - rate) * step * 0.5
            wire += rate * step + (60.0 - rate) * step * 0.5 * (1 + index)
            slo += rate * step * (0.9 - 0.1 * index)
            totals[name] = [good, launched_total, wire, failed, shed, slo]
            last = i == n - 1
            unfinished = 5 if last else 0
            ok = round(good) - (unfinished if last else 0)
            latency = f"{12.5 + index:.3f},{80.25 + 10 * index:.3f},{150 + 40 * index:.3f},900.000,1234.500"
            per_worker = [*workers, "all"] if len(workers) > 1 else ["all"]
            for w, worker in enumerate(per_worker):
                share = 1.0 if worker == "all" else (1 + w) / sum(range(1, len(workers) + 1))

                def part(value: float, share: float = share) -> int:
                    return round(value * share)

                errors = f"503={part(failed) // 2};connect-timeout={part(failed) - part(failed) // 2}"
                causes = f"throttle={part(shed)}" if index else ""
                rows.append(
                    f"{START + t:.3f},{t:.3f},{worker},{name},{3 + index + i % 4},{9 + index * 5},"
                    f"{part(launched_total)},0,{part(launched_total)},{part(wire)},{part(failed)},"
                    f"{part(shed) if index else 0},0,{causes},,,{8 + index},,,,,0,"
                    f"{part(ok)},{part(failed)},{errors},{unfinished},{index},1000.00,{part(slo)},{latency}"
                )
        lag = 5 + (i * 37) % (40 + 60 * index)
        server.append(
            f"{START + t:.3f},{t:.3f},{lag},{i % 7},{i % 5},{10 + i % 9},"
            f"{round(totals[client][2])},0,0,0,,,,,"
            f"{lag + 3},{i % 7 + 1},{10 + i % 9 + 1},{100.0 * i:.1f},{7.5 * i * index:.1f}"
        )
    files.mitigations.write_text("\n".join([MITIGATIONS_HEADER, *rows]) + "\n", encoding="utf-8")
    files.server.write_text("\n".join([SERVER_HEADER, *server]) + "\n", encoding="utf-8")
    wire_total = round(totals[client][2])
    files.stats.write_text(
        "\n".join([
            STATS_HEADER,
            f"GET,/doWork,{wire_total},{round(totals[client][3])},40,55,10,900,19,"
            f"{wire_total / duration:.1f},5.0,40,45,50,55,70,120,300,450,800,900,900",
            f",Aggregated,{wire_total},{round(totals[client][3])},40,55,0,900,19,"
            f"{wire_total / (duration + 2):.1f},25.0,40,45,50,55,70,120,300,450,800,900,900",
        ]) + "\n",
        encoding="utf-8",
    )  # fmt: skip


class Case:
    def __init__(self, scenario: str, duration: float, **config: object) -> None:
        self.scenario = scenario
        self.duration = duration
        self.config = config


CASES = {
    "healthy": Case("healthy", 10),
    "cliff": Case("cliff", 10),
    "burst": Case("burst", 20),
    "outage": Case("outage", 20),
    "capacity": Case("capacity", 32),
    "capacity-up": Case("capacity-up", 32),
    "fleet": Case("fleet", 10, workers=2),
    "metastable": Case("metastable", 20),
    "mix": Case("cliff", 10, mix=(("HammerClient", 1), ("AdaptiveClient", 3))),
}


def build(name: str, run_dir: Path):
    """The run as the runner would have it when it writes its outputs: config, plan, results, record."""
    from comparison.run_record import RunRecord

    case = CASES[name]
    extra: dict[str, object] = dict(case.config)
    if name == "metastable":
        from comparison.metastable import MetastableOptions

        options = MetastableOptions(pre_s=5.0, trigger_s=5.0, after_s=10.0, warmup_s=1.0, quick_s=2.0)
        extra["scenario_options"] = options
    clients = tuple(n for n, _ in extra["mix"]) if "mix" in extra else CLIENTS  # type: ignore[attr-defined]
    config = RunConfig(scenario=case.scenario, clients=clients, duration_s=case.duration, **extra)  # type: ignore[arg-type]
    reduced = 31.0 if name.startswith("capacity") else None
    plan = build_plan(config, 60.0, reduced)
    if name == "metastable":
        plan = plan.with_trigger(5.0, 5.0)
    event = None
    if plan.event_at_s is not None:
        length = plan.outage_s or plan.capacity_change_s or 0.0
        event = (plan.event_at_s, plan.event_at_s + length)
    record = RunRecord(
        scenario=case.scenario,
        clients=list(clients),
        command="python -m comparison --golden",
        started_utc="2024-01-01T00:00:00+00:00",
        machine={"cores": 2, "cpu": "fixture", "system": "Linux", "python": "3.x", "locust": "2.x"},
        target="embedded: fixture",
        capacity={"capacity_rps": 60.0, "source": "--capacity"},
    )
    results = []
    if config.mix:
        files = ClassFiles(run_dir / "mix")
        write_class(files, clients[0], 0, case.duration, event, others=clients[1:])
        results = [ClassResult(client, files) for client in clients]
    else:
        for index, client in enumerate(clients):
            files = ClassFiles(run_dir / client)
            workers = ("w1", "w2") if config.workers > 1 else ("local",)
            write_class(files, client, index, case.duration, event, workers)
            window = None if event is None else (START + event[0], START + event[1])
            if plan.capacity_change_s:
                results.append(ClassResult(client, files, capacity_change=window))
            else:
                results.append(ClassResult(client, files, window))
    return config, plan, results, record


def normalise(name: str, text: str) -> str:
    text = re.sub(r"<svg.*?</svg>", "<svg/>", text, flags=re.S)
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", "DATE", text)
    return text


def outputs(name: str, tmp_path: Path) -> dict[str, str]:
    from comparison.outputs import write_outputs

    run_dir = tmp_path / name
    run_dir.mkdir()
    config, plan, results, record = build(name, run_dir)
    before = {p for p in run_dir.rglob("*") if p.is_file()}
    write_outputs(run_dir, config, plan, results, record)
    written = sorted(
        p for p in run_dir.rglob("*") if p.is_file() and p not in before and p.name != "run.json"
    )
    return {p.relative_to(run_dir).as_posix(): normalise(name, p.read_text("utf-8")) for p in written}


@pytest.mark.parametrize("name", list(CASES))
def test_every_output_is_as_it_was(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    found = outputs(name, tmp_path)
    folder = GOLDEN / name
    if UPDATE:
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        for relative, text in found.items():
            (folder / relative.replace("/", "__")).write_text(text, encoding="utf-8")
    expected = {p.name: p.read_text(encoding="utf-8") for p in folder.iterdir()}
    assert sorted(expected) == sorted(k.replace("/", "__") for k in found)
    for relative, text in found.items():
        assert text == expected[relative.replace("/", "__")], f"{name}: {relative} changed"
