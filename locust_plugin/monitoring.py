"""Wires the live views into Locust: the target's /stats sampler and the mitigation numbers.

Roles follow Locust's runner:
  - local (one process): samples /stats, snapshots its own clients every `--server-sample-ms`;
  - master: samples /stats; takes each worker's client snapshots from `worker_report`;
  - master: also watches for workers Locust marks missing (`worker_watch`: lost, and back);
  - worker: never samples /stats; adds its client snapshots to `report_to_master` (every 3 s), and
    while a test runs also sends them every `WORKER_SAMPLE_S` in a `hammerlab_clients` message, so each
    client instance's numbers (its adaptive limit above all) have a one-second resolution.

The numbers feed the web UI tabs (`web_ui`) and, with `--csv PREFIX`, `PREFIX_server.csv` and
`PREFIX_mitigations.csv` (columns in `mitigations.csv_schema`). One `Monitor` per process
lives on `environment.hammerlab_monitor`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

import gevent
from locust import events
from locust.runners import MasterRunner, WorkerRunner

from locust_plugin import web_ui
from locust_plugin.client_stats import ClientSnapshot, ClientStatsCollector
from locust_plugin.csv_log import CsvLog
from locust_plugin.mitigation_rows import MitigationRow
from locust_plugin.mitigations_board import MitigationsBoard
from locust_plugin.runtime import runtimes
from locust_plugin.server_metrics import source_from_options
from locust_plugin.server_sample import SampleInterval
from locust_plugin.server_sampler import ServerSampler
from locust_plugin.target import target_host
from locust_plugin.worker_watch import watch_forever
from mitigations.csv_schema import LOCAL_WORKER, MITIGATION_COLUMNS
from mitigations.guard import remote_problem
from mitigations.metrics_map import SeriesMap, check_url

log = logging.getLogger("hammerlab")

REPORT_KEY = "hammerlab_clients"
SNAPSHOT_MESSAGE = "hammerlab_clients"
WORKER_SAMPLE_S = 1.0
ATTRIBUTE = "hammerlab_monitor"
COALESCE_S = 0.05


def role_of(runner: Any) -> str:
    if isinstance(runner, WorkerRunner):
        return "worker"
    if isinstance(runner, MasterRunner):
        return "master"
    return "local"


class Monitor:
    """This process's share of the live views. See the module doc for who does what."""

    def __init__(self, environment: Any) -> None:
        self.environment = environment
        self.role = role_of(environment.runner)
        options = environment.parsed_options
        self.interval = SampleInterval()
        self.csv_prefix: str | None = getattr(options, "csv_prefix", None) or None
        self.sampler = ServerSampler(self.interval)
        self.sampler.allow_remote = bool(getattr(options, "allow_remote", False))
        self.sampler.metrics = source_from_options(options)  # checked at start-up (metrics_problem)
        self._read_interval()
        self.collector = ClientStatsCollector()
        self.board = MitigationsBoard()
        self.mitigations_csv: CsvLog | None = None
        self.started_at = time.time()
        self.running = False
        self._ticker: gevent.Greenlet | None = None
        self._pending: gevent.Greenlet | None = None
        self._watch: gevent.Greenlet | None = None
        self.heard: dict[str, float] = {}  # worker -> time.monotonic() of its latest report (worker_watch)

    # -- test life cycle --------------------------------------------------------------------------------

    def test_started(self) -> None:
        self.collector.reset()
        if self.role == "worker":
            self._stop_ticker()
            self._ticker = gevent.spawn(self._send_forever)
            return
        self.started_at = time.time()
        self._read_interval()
        self.board.begin_test()
        self._open_csvs()
        self.running = True
        self.sampler.start(target_host(self.environment), self.started_at)
        if self.role == "master" and self._watch is None:
            self._watch = gevent.spawn(watch_forever, self)  # until quit: a worker may go after the stop
        if self.role == "local":
            self._stop_ticker()
            self._ticker = gevent.spawn(self._tick_forever)

    def test_stopped(self) -> None:
        if self.role == "worker":
            self._stop_ticker()
            return
        self.running = False
        self.sampler.stop()
        if self.role == "local":
            self._stop_ticker()
            self.sample_local()  # the numbers once the users have stopped

    def close(self) -> None:
        """At quit: stop sampling and close the CSV files (a master has had its workers' last reports)."""
        self._stop_ticker()
        if self._watch is not None:
            self._watch.kill(block=True)
            self._watch = None
        if self._pending is not None:
            self._pending.kill(block=True)
            self._write_pending()
        self.sampler.close()
        if self.mitigations_csv is not None:
            self.mitigations_csv.close()
            self.mitigations_csv = None

    # -- the numbers --------------------------------------------------------------------------------------

    def sample_local(self) -> list[MitigationRow]:
        snapshots = self.collector.snapshot(runtimes(self.environment))
        self.board.update(LOCAL_WORKER, self.collector.run, snapshots)
        return self._write_rows()

    def add_report(self, data: dict[str, Any]) -> None:
        """Worker: put this process's client snapshots into Locust's stats report."""
        if self.collector.run == 0:
            return  # no test yet: nothing to say
        snapshots = self.collector.snapshot(runtimes(self.environment))
        data[REPORT_KEY] = {"run": self.collector.run, "clients": [s.to_json() for s in snapshots]}

    def _send_forever(self) -> None:
        """Worker: this process's snapshots to the master every WORKER_SAMPLE_S, between Locust's reports."""
        while True:
            gevent.sleep(WORKER_SAMPLE_S)
            data: dict[str, Any] = {}
            self.add_report(data)
            if REPORT_KEY in data:
                self.environment.runner.send_message(SNAPSHOT_MESSAGE, data)

    def take_report(self, worker: str, data: dict[str, Any]) -> None:
        """Master: one worker's report. Writes a full sample while a test runs, and afterwards only
        when numbers changed (the workers' last reports arrive after the test stops)."""
        payload = data.get(REPORT_KEY)
        if not isinstance(payload, dict) or not isinstance(payload.get("run"), int):
            return
        snapshots = []
        for item in payload.get("clients") or ():
            try:
                snapshots.append(ClientSnapshot.from_json(item))
            except ValueError as error:
                log.debug("hammerlab: dropped a client snapshot from %s: %s", worker, error)
        self.heard[worker] = time.monotonic()
        lost_at = self.board.lost.get(worker)
        changed = self.board.update(worker, payload["run"], snapshots, received_at=time.time())
        if lost_at is not None and worker not in self.board.lost:
            log.warning("hammerlab: worker %s, lost %.1f s into the test, reports again; its new totals "
                        "replace the old ones", worker, lost_at)  # fmt: skip
        if changed or (self.running and snapshots):
            self.write_soon()

    def write_soon(self) -> None:
        """Write a sample shortly: workers often report together (always at the end), one for the lot."""
        if self._pending is None:
            self._pending = gevent.spawn_later(COALESCE_S, self._write_pending)

    def _write_pending(self) -> None:
        self._pending = None
        self._write_rows()

    def _write_rows(self) -> list[MitigationRow]:
        now = time.time()
        rows = self.board.rows(now, now - self.started_at)
        if self.mitigations_csv is not None and rows:
            self.mitigations_csv.write(row.csv_row() for row in rows)
        return rows

    # -- plumbing -------------------------------------------------------------------------------------------

    def _read_interval(self) -> None:
        """`--server-sample-ms`, which the web UI may have changed (to raw text) since the last test."""
        raw = getattr(self.environment.parsed_options, "server_sample_ms", self.interval.ms)
        try:
            self.interval = SampleInterval.parse(raw)
        except ValueError as error:
            log.error("hammerlab: %s; sampling every %d ms", error, self.interval.ms)
        self.sampler.interval = self.interval

    def _open_csvs(self) -> None:
        if not self.csv_prefix:
            return
        self.sampler.open_csv(Path(f"{self.csv_prefix}_server.csv"))
        if self.mitigations_csv is None:
            self.mitigations_csv = CsvLog(Path(f"{self.csv_prefix}_mitigations.csv"), MITIGATION_COLUMNS)

    def _tick_forever(self) -> None:
        while True:
            gevent.sleep(self.interval.seconds or SampleInterval().seconds)
            self.sample_local()

    def _stop_ticker(self) -> None:
        if self._ticker is not None:
            self._ticker.kill(block=True)
            self._ticker = None


def monitor_of(environment: Any) -> Monitor | None:
    return getattr(environment, ATTRIBUTE, None)


# -- Locust listeners ---------------------------------------------------------------------------------------


def _sample_ms(text: str) -> int:
    try:
        return SampleInterval.parse(text).ms
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("--server-sample-ms ")) from None


def _argument(parse: Any, prefix: str) -> Any:
    def check(text: str) -> str:
        try:
            if text:  # argparse passes the empty default through here too
                parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error).removeprefix(prefix)) from None
        return text

    return check


@events.init_command_line_parser.add_listener
def _add_option(parser: Any, **_: Any) -> None:
    parser.add_argument(
        "--server-sample-ms",
        type=_sample_ms,
        default=SampleInterval().ms,
        help="how often the master reads the target's status (its status series, else /stats) for the "
        "Target server tab and PREFIX_server.csv: 100-10000, or 0 for never (default 250)",
    )
    parser.add_argument(
        "--server-metrics",
        type=_argument(check_url, "--server-metrics "),
        default="",
        metavar="URL",
        help="read the server columns from this Prometheus text endpoint instead of the target's /stats "
        "(docs/server-metrics.md)",
    )
    parser.add_argument(
        "--server-metric",
        type=_argument(SeriesMap.parse, "--server-metric "),
        action="append",
        metavar="COLUMN=SERIES",
        help="with --server-metrics: map a series onto a server column, e.g. "
        "in_flight=http_requests_in_flight or lag_ms=nodejs_eventloop_lag_seconds*1000; repeat for more "
        "(default: Hammerlab's own names)",
    )


def metrics_problem(options: Any) -> str | None:
    """The one line that refuses `--server-metrics`/`--server-metric` (a bad mapping, or an endpoint off
    this machine without --allow-remote), else None."""
    try:
        source = source_from_options(options)
    except ValueError as error:
        return str(error)
    if source is None or source.given.startswith("/"):
        return None  # a path on the run's host, which the host check covers
    return remote_problem(source.url, bool(getattr(options, "allow_remote", False)), "--server-metrics")


@events.init.add_listener
def _on_init(environment: Any, **_: Any) -> None:
    if environment.parsed_options is None or environment.runner is None:
        return  # a library user building their own Environment: nothing to wire
    problem = metrics_problem(environment.parsed_options)
    if problem:
        sys.stderr.write(f"hammerlab: error: {problem}\n")
        sys.exit(2)
    monitor = Monitor(environment)
    setattr(environment, ATTRIBUTE, monitor)
    # report_to_master and worker_report carry no environment: bind this process's monitor here.
    if monitor.role != "master":
        environment.events.request.add_listener(monitor.collector.on_request)
    if monitor.role == "worker":
        environment.events.report_to_master.add_listener(
            lambda client_id, data, **_: monitor.add_report(data)
        )
    if monitor.role == "master":
        environment.events.worker_report.add_listener(
            lambda client_id, data, **_: monitor.take_report(client_id, data)
        )
        environment.runner.register_message(
            SNAPSHOT_MESSAGE, lambda environment, msg, **_: monitor.take_report(msg.node_id, msg.data or {})
        )
    if environment.web_ui is not None:
        web_ui.install(environment, monitor)


@events.test_start.add_listener
def _on_test_start(environment: Any, **_: Any) -> None:
    monitor = monitor_of(environment)
    if monitor is not None:
        monitor.test_started()


@events.test_stop.add_listener
def _on_test_stop(environment: Any, **_: Any) -> None:
    monitor = monitor_of(environment)
    if monitor is not None:
        monitor.test_stopped()


@events.quitting.add_listener
def _on_quitting(environment: Any, **_: Any) -> None:
    monitor = monitor_of(environment)
    if monitor is not None:
        monitor.close()
