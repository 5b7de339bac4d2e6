"""One client class, one real `locust --headless` process: its command line, and watching it run.

The runner never reaches into Locust: it starts the same command a user would type, from the repo root,
and reads the files it writes. While the process runs this module prints a progress line from the
sampler's growing PREFIX_mitigations.csv and, in the outage and capacity scenarios, changes the server on
time (the plan's `event_at_s`).
"""

from __future__ import annotations

import csv
import io
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from comparison.external import ExternalWorkers
from comparison.plan import LoadPlan
from comparison.readers import ClassFiles
from comparison.target import start_child, stop_child
from comparison.user_locustfile import UserLocustfile, locustfile_arg
from mitigations.csv_schema import ALL_WORKERS
from mitigations.guard import STOP_LOSS_EXIT

LOCUST = (sys.executable, "-m", "locust")
"""This interpreter's Locust: `bin/locust` is not beside sys.executable after `pip install --user`."""
SHAPE_FILE = Path(__file__).resolve().with_name("burst_shape.py")
SCHEDULE_FILE = Path(__file__).resolve().with_name("schedule_shape.py")
POLL_S = 0.25
START_TIMEOUT_S = 30.0  # Locust's own start-up, before the test clock runs
FINISH_GRACE_S = 30.0  # after the run time: stopping users and writing the HTML report
LOCUST_STOP_GRACE_S = 10.0
LIVE_WINDOW_S = 1.0
WORKERS_WAIT_S = 30  # how long a master waits for its workers to connect before it gives up


class LocustFailed(RuntimeError):
    """Locust refused to run (exit 2: a bad option) or ended in an unexpected way."""

    def __init__(self, message: str, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


def free_port() -> int:
    """A loopback TCP port nobody listens on now (for a Locust master's worker channel)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def distributed_args(
    workers: int, port: int | None = None, external: ExternalWorkers | None = None
) -> list[str]:
    """Locust's own distributed mode: a master that forks `workers` worker processes (`--processes`),
    talking over a free loopback port rather than 5557, so parallel runs never collide; or, with
    `external`, a master alone that waits for workers on other hosts (comparison/external.py)."""
    if external is not None:
        return external.master_args()
    if workers <= 1:
        return []
    port = port or free_port()
    return [
        "--processes", str(workers),
        "--master-bind-host", "127.0.0.1",
        "--master-bind-port", str(port),
        "--master-port", str(port),  # the forked workers read it to find their master
        "--expect-workers-max-wait", str(WORKERS_WAIT_S),
    ]  # fmt: skip


def locust_command(
    client: str,
    files: ClassFiles,
    host: str,
    plan: LoadPlan,
    passthrough: tuple[str, ...],
    locustfile: UserLocustfile | None = None,
    external: ExternalWorkers | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment for one class. Offered rate = users x --launch-rate; with
    `plan.workers` > 1, the users are spread evenly over that many Locust workers. `locustfile`: the
    user's own file, loaded beside the lab's; `external`: the workers run on other hosts."""
    shape = SHAPE_FILE if plan.burst is not None else SCHEDULE_FILE if plan.schedule else None
    locustfiles = locustfile_arg(locustfile, *([shape] if shape else []))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    timing: list[str] = []
    if plan.burst is not None:
        env["HAMMERLAB_BURST"] = plan.burst.to_env(plan.duration_s)
    elif plan.schedule:
        env["HAMMERLAB_SCHEDULE"] = plan.schedule_env()
    else:
        timing = ["-u", str(plan.users), "-r", str(plan.users), "-t", f"{plan.duration_s:.0f}s"]
    command = [
        *LOCUST,
        "-f",
        locustfiles,
        "--headless",
        "--host",
        host,
        *timing,
        *distributed_args(plan.workers, external=external),
        "--launch-rate",
        f"{plan.launch_rate:.3f}",
        "--slo-ms",
        f"{plan.slo_ms:g}",
        "--drain-s",
        f"{plan.drain_s:g}",
        "--csv",
        str(files.prefix),
        "--csv-full-history",
        "--html",
        str(files.html),
        # A melting server is the point of the lab, not an error of the run.
        "--exit-code-on-error",
        "0",
        "--only-summary",
        # A DeferredClient's queue lives with the run, so a run never inherits another's leftovers.
        *(
            []
            if any(t.startswith("--defer-dir") for t in passthrough)
            else ["--defer-dir", str(files.prefix.parent / "defer")]
        ),
        *passthrough,
        *(["--mix", plan.mix_spec(), *(name for name, _ in plan.mix)] if plan.mix else [client]),
    ]
    return command, env


class CsvTail:
    """Reads the rows appended to a growing CSV since the last call (the header comes first)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.header: list[str] | None = None
        self.partial = ""

    def new_rows(self) -> list[dict[str, str]]:
        try:
            with self.path.open(encoding="utf-8", newline="") as handle:
                handle.seek(self.offset)
                text = handle.read()
                self.offset = handle.tell()
        except FileNotFoundError:
            return []
        text, self.partial = self.partial + text, ""
        if not text.endswith("\n"):
            text, _, self.partial = text.rpartition("\n")
        lines = [line for line in text.splitlines() if line]
        if self.header is None and lines:
            self.header = next(csv.reader([lines.pop(0)]))
        if not lines or self.header is None:
            return []
        return list(csv.DictReader(io.StringIO("\n".join(lines)), fieldnames=self.header))


@dataclass
class LiveRates:
    """Per-second rates between the two latest samples of one client."""

    goodput: float = 0.0
    errors: float = 0.0
    shed: float = 0.0
    concurrent: int = 0
    seen: bool = False


def _delta(row: dict[str, str], last: dict[str, str], name: str) -> int:
    return int(row[name] or 0) - int(last[name] or 0)


class Progress:
    """The runner's progress line: class i of n, elapsed, live goodput, errors and shed."""

    def __init__(
        self, out: TextIO, client: str, index: int, total: int, duration_s: float, label: str = ""
    ) -> None:
        """`client`: the class whose live rates are shown; `label`: what the line calls the run."""
        self.out = out
        self.client = client
        self.label = label or client
        self.index = index
        self.total = total
        self.duration_s = duration_s
        self.tty = out.isatty()
        self.rates = LiveRates()
        self._recent: deque[dict[str, str]] = deque(maxlen=64)
        self._printed_at = 0.0

    def feed(self, rows: list[dict[str, str]]) -> None:
        for row in rows:
            if row.get("worker") != ALL_WORKERS or row.get("client") != self.client:
                continue
            self._recent.append(row)
            now = float(row["timestamp"])
            # over the last second or more: a sample taken right after another says little
            last = next(
                (r for r in reversed(self._recent) if float(r["timestamp"]) <= now - LIVE_WINDOW_S), None
            )
            if last is None:
                continue
            seconds = now - float(last["timestamp"])

            good = _delta(row, last, "wire_total") - _delta(row, last, "wire_failures_total")
            self.rates = LiveRates(
                goodput=max(0.0, good / seconds),
                errors=max(0.0, _delta(row, last, "wire_failures_total") / seconds),
                shed=max(0.0, _delta(row, last, "shed_total") / seconds),
                concurrent=int(row["concurrent"] or 0),
                seen=True,
            )

    def line(self, elapsed: float, note: str = "") -> str:
        live = (
            f"goodput {self.rates.goodput:6.1f}/s  errors {self.rates.errors:6.1f}/s  "
            f"shed {self.rates.shed:6.1f}/s  client concurrent {self.rates.concurrent:5d}"
            if self.rates.seen
            else "waiting for the first samples"
        )
        head = f"class {self.index} of {self.total} {self.label}"
        return f"{head}  {min(elapsed, self.duration_s):5.1f}/{self.duration_s:g} s  {live}{note}"

    def show(self, elapsed: float, note: str = "", force: bool = False) -> None:
        now = time.monotonic()
        period = 1.0 if self.tty else 5.0
        if not force and now - self._printed_at < period:
            return
        self._printed_at = now
        if self.tty:
            self.out.write("\r\033[K" + self.line(elapsed, note))
        else:
            self.out.write(self.line(elapsed, note) + "\n")
        self.out.flush()

    def done(self, elapsed: float) -> None:
        self.show(elapsed, "  done", force=True)
        if self.tty:
            self.out.write("\n")
        self.out.flush()


@dataclass(frozen=True)
class LocustResult:
    returncode: int
    event: tuple[float, float] | None  # the outage or capacity change, (start, end) in unix seconds
    pid: int
    stop_loss: str = ""  # the --abort-on line, when the process stopped itself on one (exit code 3)


def run_locust(
    client: str,
    files: ClassFiles,
    host: str,
    plan: LoadPlan,
    passthrough: tuple[str, ...],
    progress: Progress,
    inject: Callable[[], tuple[float, float]] | None = None,
    on_start: Callable[[int], None] | None = None,
    locustfile: UserLocustfile | None = None,
    external: ExternalWorkers | None = None,
) -> LocustResult:
    """Run one class to the end, calling `inject` once at the plan's `event_at_s`. On any exception
    (an interrupt included) Locust is stopped with SIGINT, so it still writes its CSVs and HTML, and
    killed if it does not stop in time. With `external` workers the test starts when they have all
    come (the master's ledger file appears then; its stats file, at once) and Locust gets their wait
    on top of its own start-up."""
    command, env = locust_command(client, files, host, plan, passthrough, locustfile, external)
    started_file = files.mitigations if external is not None else files.stats
    start_timeout = START_TIMEOUT_S + (external.wait_s if external is not None else 0)
    process = start_child(command, files.locust_log, env)
    if on_start is not None:
        on_start(process.pid)
    tail = CsvTail(files.mitigations)
    launched = time.monotonic()
    test_started: float | None = None
    event: tuple[float, float] | None = None
    label = "  outage" if plan.outage_s else "  capacity reduced"
    try:
        while process.poll() is None:
            time.sleep(POLL_S)
            now = time.monotonic()
            if test_started is None and started_file.exists():
                test_started = now
            if test_started is None:
                if now - launched > start_timeout:
                    raise LocustFailed(
                        f"{client}: Locust did not start within {start_timeout:g} s; see {files.locust_log}"
                    )
                continue
            elapsed = now - test_started
            due = plan.event_at_s is not None and elapsed >= plan.event_at_s
            if inject and event is None and due:
                event = inject()
            if elapsed > plan.duration_s + plan.drain_s + FINISH_GRACE_S:
                raise LocustFailed(
                    f"{client}: Locust ran {plan.drain_s + FINISH_GRACE_S:g} s past its run time; stopped it"
                )
            progress.feed(tail.new_rows())
            note = label if event and event[0] <= time.time() < event[1] else ""
            progress.show(elapsed, note)
    except BaseException:
        stop_child(process, signal.SIGINT, LOCUST_STOP_GRACE_S)
        raise
    stop_child(process)  # reaps it and anything it left in its group
    elapsed = time.monotonic() - (test_started or launched)
    stop_loss = ""
    if process.returncode == STOP_LOSS_EXIT:
        lines = files.locust_log.read_text(errors="replace").splitlines()
        said = [line[line.index("stop-loss:") :] for line in lines if "stop-loss:" in line]
        stop_loss = said[-1] if said else ""
    if (
        process.returncode != 0
        and external is not None
        and (line := external.did_not_come(client, files.locust_log))
    ):
        raise LocustFailed(line)
    if process.returncode != 0 and not stop_loss:
        tail_lines = files.locust_log.read_text(errors="replace").strip().splitlines()
        last = tail_lines[-1] if tail_lines else "no output"
        raise LocustFailed(
            f"{client}: locust exited with code {process.returncode}: {last}", usage=process.returncode == 2
        )
    progress.feed(tail.new_rows())
    progress.done(elapsed)
    return LocustResult(process.returncode, event, process.pid, stop_loss)
