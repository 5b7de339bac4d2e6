"""In a distributed run, the workers drain first and report after the drain, before the master writes.

Locust's headless master ends a test with `quit`: it tells its workers to quit, sleeps 0.5 s and stops
listening. A worker drains its calls in flight (`test_stopping`, up to `--drain-s`) before it sends its
last report, so that report, the only one with the drained calls and the `unfinished` count, arrived
after the master had stopped listening: the final `all` row was the last periodic one, with hundreds of
calls still in flight (measured: 522 of 930 at 2 x C, identity broken).

So the master, in its own `test_stopping` (before it tells anyone to stop or quit), sends every worker
`hammerlab_drain`; each worker drains, sends its stats report (Locust's stats and the Hammerlab
snapshots, `report_to_master`) and then `hammerlab_drained`. Messages from one worker arrive in order,
so once the master has every `hammerlab_drained` it has every final report. It waits at most the drain
time plus `GRACE_S`; a worker that never answers is named in one warning line. A worker that Locust
marks missing meanwhile (it died, or its network was cut: `worker_watch`) is not waited for: its last
report is all the master will get. The same path serves a stop from the web UI.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import gevent
from locust import events
from locust.runners import STATE_MISSING, MasterRunner, WorkerRunner

from locust_plugin.runtime import drain_runtimes, drain_seconds

log = logging.getLogger("hammerlab")

DRAIN_MESSAGE = "hammerlab_drain"
DRAINED_MESSAGE = "hammerlab_drained"
GRACE_S = 10.0  # after the drain: ending what is left (up to 5 s) and sending the report
POLL_S = 0.05
_ATTRIBUTE = "hammerlab_final_reports"


class FinalReports:
    """On the master: which workers have reported after their drain, in the current stop."""

    def __init__(self) -> None:
        self.waiting: set[str] = set()

    def drained(self, environment: Any, msg: Any, **_: Any) -> None:
        self.waiting.discard(msg.node_id)

    def collect(self, environment: Any) -> None:
        """Ask every live worker to drain and report; return once all have, or the time is up."""
        runner = environment.runner
        workers = sorted(live_workers(runner))
        if not workers:
            return
        self.waiting = set(workers)
        runner.send_message(DRAIN_MESSAGE, {})
        deadline = time.monotonic() + drain_seconds(environment) + GRACE_S
        while self.waiting and time.monotonic() < deadline:
            gevent.sleep(POLL_S)
            self.waiting &= live_workers(runner)
        if self.waiting:
            log.warning(
                "hammerlab: no report after the drain from %d of %d workers (%s); their last numbers are "
                "from before it", len(self.waiting), len(workers), ", ".join(sorted(self.waiting)),
            )  # fmt: skip
        self.waiting = set()


def live_workers(runner: Any) -> set[str]:
    """Workers a final report can still come from: connected and not marked missing (no heartbeat)."""
    return {node.id for node in runner.clients.all if node.state != STATE_MISSING}


def _drain_and_report(environment: Any, **_: Any) -> None:
    """On a worker: drain, then the final stats report, then say so (in that order, on one socket)."""
    runner = environment.runner
    drain_runtimes(environment)
    send_stats = getattr(runner, "_send_stats", None)
    if send_stats is not None:
        send_stats()
    else:  # a Locust without the private helper: the same report, by hand
        data: dict[str, Any] = {}
        environment.events.report_to_master.fire(client_id=runner.client_id, data=data)
        runner.send_message("stats", data)
    runner.send_message(DRAINED_MESSAGE, {})


@events.init.add_listener
def _on_init(environment: Any, **_: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        # concurrent: the drain takes seconds, and the worker's message loop must keep running meanwhile
        runner.register_message(DRAIN_MESSAGE, _drain_and_report, concurrent=True)
    elif isinstance(runner, MasterRunner):
        reports = FinalReports()
        setattr(environment, _ATTRIBUTE, reports)
        runner.register_message(DRAINED_MESSAGE, reports.drained)


@events.test_stopping.add_listener
def _on_test_stopping(environment: Any, **_: Any) -> None:
    reports = getattr(environment, _ATTRIBUTE, None)
    if reports is not None and isinstance(environment.runner, MasterRunner):
        reports.collect(environment)
