"""Ctrl-C and SIGTERM: stop the children in order, keep what finished, then exit.

The children run in their own process groups, so a terminal's Ctrl-C reaches only the runner. The first
signal raises `Interrupted` wherever the runner is; while it stops its children (`cleaning`), further
signals are ignored so that cleanup cannot be cut short and leave a server behind. Once the children
are gone, another signal interrupts again (for example the summary of the classes that finished).

Inside `deferred()` (the gevent capacity probe) a signal is only recorded: raising it inside gevent's hub
would print a traceback. The probe polls `pending()` and stops, and the interrupt is raised on the way out.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Interrupted(KeyboardInterrupt):
    """A KeyboardInterrupt, so that gevent's hub (used by the probe) passes it on to the main greenlet."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signum, 1)


class SignalGuard:
    """Installs the handlers for the life of a `with` block and restores the old ones after."""

    def __init__(self) -> None:
        self.cleaning = False
        self.received: int | None = None
        self._deferring = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> SignalGuard:
        for signum in EXIT_CODES:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *_: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
        if self.cleaning or self._deferring:
            return
        self.cleaning = True
        raise Interrupted(signum)

    def pending(self) -> bool:
        """A signal arrived while deferring: stop what you are doing."""
        return self._deferring and self.received is not None

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Record signals instead of raising them inside the block; raise the first one after it."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
        if self.received is not None and not self.cleaning:
            self.cleaning = True
            raise Interrupted(self.received)

    def cleaned(self) -> None:
        """The children are stopped: a new signal may interrupt again."""
        self.cleaning = False
