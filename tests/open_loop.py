"""Open-loop load from the test process itself, for the end-to-end policy tests (slow: they sleep)."""

from __future__ import annotations

import gevent

from mitigations.core import Call, MonotonicClock, Outcome, Pipeline

CLOCK = MonotonicClock()


def offer(pipeline: Pipeline, rate: float, seconds: float, join_s: float = 10.0) -> list[Outcome]:
    """`rate` calls/s for `seconds`, each launched on schedule in its own greenlet (as the launcher does),
    whatever happens to earlier ones. Returns the outcomes in launch order, of the calls that ended within
    `join_s` after the last launch."""
    calls = []
    start = CLOCK.now()
    for i in range(int(rate * seconds)):
        gevent.sleep(max(0.0, start + i / rate - CLOCK.now()))
        calls.append(gevent.spawn(pipeline.execute, Call("GET", "/doWork", launched_at=start + i / rate)))
    gevent.joinall(calls, timeout=join_s)
    return [job.value for job in calls if job.value is not None]
