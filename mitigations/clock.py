"""Where policies read time: the real monotonic clock, and a fake one tests move by hand so that no unit
test sleeps."""

from __future__ import annotations

import time
from typing import Protocol

import gevent
import gevent.event


class Clock(Protocol):
    """Where policies read time. Tests inject a `FakeClock` so that no unit test sleeps."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    def wait(self, event: gevent.event.Event, timeout: float | None) -> bool:
        """Wait for `event` at most `timeout` seconds (None: forever). True if it was set."""
        ...


class MonotonicClock:
    """The real clock: `time.monotonic` and a cooperative `gevent.sleep`."""

    # The builtin itself, not a method around it: every call reads the clock several times.
    now = staticmethod(time.monotonic)

    def sleep(self, seconds: float) -> None:
        gevent.sleep(max(0.0, seconds))

    def wait(self, event: gevent.event.Event, timeout: float | None) -> bool:
        return event.wait(None if timeout is None else max(0.0, timeout))


class FakeClock:
    """A clock that only moves when told to. `sleep` advances it at once."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def wait(self, event: gevent.event.Event, timeout: float | None) -> bool:
        """Let other greenlets run once; if that did not set `event`, the whole timeout passes."""
        gevent.sleep(0)
        if event.is_set():
            return True
        if timeout is None:
            raise RuntimeError("FakeClock.wait without a timeout would block forever")
        self.advance(max(0.0, timeout))
        return event.is_set()

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"cannot move a clock backwards by {seconds}")
        self._now += seconds


SYSTEM_CLOCK = MonotonicClock()
