"""On the master: notice a worker that stopped reporting, and say what it took with it.

Locust's master counts down each worker's heartbeat once a second and marks it `missing` when none came
for `HEARTBEAT_LIVENESS` (3) beats, about 4 s: the worker died (SIGKILL, OOM, its host went down) or the
network between them was cut. Locust itself then only stops giving it users; nothing it reported is
taken back, and nothing says what it had in flight. This watch looks at the workers' states every
`WATCH_S` and marks each newly missing one lost on the mitigations board (`MitigationsBoard.lose`):
its reported calls stay counted, its calls in flight at its last report become `lost_with_worker`, and
one warning line names it and the time. A worker whose heartbeat comes back reports again, and the
board takes its new cumulative numbers in place of the old ones (docs/distributed.md).

A worker that has reported within `QUIET_S` is never marked lost, missing or not: its reports travel
on the socket its heartbeats do, so it is back. (Locust keeps a healed worker `missing` while it
re-dispatches users to it, which yields; measured across namespaces, the master marked a worker lost
again 0.4 s after its first report back.)
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

import gevent
from locust.runners import STATE_MISSING

from locust_plugin.mitigations_board import MitigationsBoard

log = logging.getLogger("hammerlab")

WATCH_S = 0.5
QUIET_S = 2.0  # less than Locust's liveness window (about 4 s) and twice a worker's report period (1 s)


class Watched(Protocol):
    """What the watch needs of the master's `Monitor`."""

    environment: Any
    board: MitigationsBoard
    started_at: float
    heard: dict[str, float]  # worker -> time.monotonic() of its latest report

    def write_soon(self) -> None: ...


def missing_workers(runner: Any) -> list[str]:
    """The ids of the workers Locust's master has marked missing (no heartbeat for its liveness window)."""
    return sorted(node.id for node in runner.clients.all if node.state == STATE_MISSING)


def mark_lost(monitor: Watched, wall: Any = time.time, clock: Any = time.monotonic) -> list[str]:
    """Mark every newly missing, quiet worker lost on the board, with one warning line each; returns
    them."""
    elapsed = max(0.0, wall() - monitor.started_at)
    newly = []
    for worker in missing_workers(monitor.environment.runner):
        if clock() - monitor.heard.get(worker, float("-inf")) < QUIET_S:
            continue  # it reports: back, whatever Locust's flag still says
        calls = monitor.board.lose(worker, elapsed)
        if calls is None:
            continue
        newly.append(worker)
        log.warning(
            "hammerlab: worker %s lost %.1f s into the test (no heartbeat for Locust's liveness window); "
            "what it reported stays counted, its %d calls in flight then count as lost_with_worker",
            worker, elapsed, calls,
        )  # fmt: skip
    if newly:
        monitor.write_soon()
    return newly


def watch_forever(monitor: Watched) -> None:
    while True:
        gevent.sleep(WATCH_S)
        mark_lost(monitor)
