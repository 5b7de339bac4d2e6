"""Open-loop load from the test process itself, for the end-to-end policy tests (slow: they sleep)."""

from __future__ import annotations

from collections.abc import Callable

import gevent

from mitigations.core import Call, MonotonicClock, Outcome, Pipeline

CLOCK = MonotonicClock()


def offer(
    pipeline: Pipeline,
    rate: float,
    seconds: float,
    join_s: float = 10.0,
    until: Callable[[list[Outcome]], bool] | None = None,
    max_s: float = 0.0,
) -> list[Outcome]:
    """`rate` calls/s for `seconds`, each launched on schedule in its own greenlet (as the launcher does),
    whatever happens to earlier ones. Returns the outcomes in launch order, of the calls that ended within
    `join_s` after the last launch. With `until`, the load goes on past `seconds` (up to `max_s`) until
    `until(the outcomes of the calls ended so far, in launch order)` holds, checked every 0.25 s: a
    condition to wait on, not a clock."""
    calls = []
    start = CLOCK.now()
    check_every = max(1, int(rate / 4))
    for i in range(int(rate * (seconds if until is None else max(seconds, max_s)))):
        checked = until is not None and i >= rate * seconds and i % check_every == 0
        if checked and until([job.value for job in calls if job.ready() and job.value is not None]):
            break
        gevent.sleep(max(0.0, start + i / rate - CLOCK.now()))
        calls.append(gevent.spawn(pipeline.execute, Call("GET", "/doWork", launched_at=start + i / rate)))
    gevent.joinall(calls, timeout=join_s)
    return [job.value for job in calls if job.value is not None]
