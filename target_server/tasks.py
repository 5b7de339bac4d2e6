"""The seed's work model: each /doWork request runs `expansion` tasks, and each task waits without
blocking (`task_delay_ms`), then blocks the loop with CPU work (`sync_work_ms`).

Before its CPU-bound part a task checks whether anybody still wants the answer: a propagated deadline
that has passed (`--drop-expired`) or a client that hung up (`--skip-abandoned`) ends it early. The CPU
it does spend is counted, and counted as wasted when the client had given up by the time it finished:
the work a metastable server wastes. Nothing here knows of Flask or HTTP.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

import gevent

from target_server.busy import busy_spin
from target_server.deadline import Deadline
from target_server.state import TargetState

DONE_WORK, ABANDONED, EXPIRED = "done", "abandoned", "expired"


@dataclass(frozen=True)
class Work:
    """What each task of one request does, and what it checks before its CPU-bound part."""

    delay_ms: float
    work_ms: float
    client: socket.socket | None
    deadline: Deadline | None
    skip_abandoned: bool
    drop_expired: bool
    cpu_ms: list[float] = field(default_factory=list)  # what each task spent, for the server span


def run_tasks(state: TargetState, expansion: int, work: Work) -> str:
    """Run the tasks: EXPIRED if any was dropped for its deadline, else ABANDONED if any skipped its
    work because the client hung up, else DONE_WORK."""
    if expansion == 1:
        return run_task(state, work)
    tasks = [gevent.spawn(run_task, state, work) for _ in range(expansion)]
    gevent.joinall(tasks, raise_error=True)
    ends = {task.value for task in tasks}
    return EXPIRED if EXPIRED in ends else ABANDONED if ABANDONED in ends else DONE_WORK


def run_task(state: TargetState, work: Work) -> str:
    """The seed's task: wait without blocking, then block the loop with CPU work, unless nobody waits
    for the answer any more (the work a metastable server wastes). Its CPU time is counted, and counted
    as wasted when the client had given up by the time it finished."""
    state.gauges.enter_task()
    try:
        gevent.sleep(work.delay_ms / 1000)
    finally:
        state.gauges.concurrent -= 1
    state.totals.tasks_completed += 1
    if work.work_ms <= 0:
        return DONE_WORK
    if work.drop_expired and work.deadline is not None and work.deadline.remaining_s() * 1000 < work.work_ms:
        return EXPIRED  # the deadline has passed, or will have before this work could finish
    if work.skip_abandoned and work.client is not None and hung_up(work.client):
        return ABANDONED
    started = time.thread_time()
    busy_spin(work.work_ms)
    spent_ms = (time.thread_time() - started) * 1000
    totals = state.totals
    totals.work_cpu_ms += spent_ms
    work.cpu_ms.append(spent_ms)
    gone = work.deadline is not None and work.deadline.expired()
    if gone or (work.client is not None and hung_up(work.client)):
        totals.wasted_cpu_ms += spent_ms
    return DONE_WORK


def hung_up(sock: socket.socket) -> bool:
    """True if the client closed or reset its connection: a non-blocking MSG_PEEK read sees EOF.

    A client that pipelined its next request shows data, and one that is just waiting shows nothing
    (EAGAIN): both still want the answer. A half-close (shutdown(SHUT_WR)) also reads as EOF; HTTP
    clients that wait for an answer do not do that.
    """
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:  # ECONNRESET, or the socket is already closed
        return True
