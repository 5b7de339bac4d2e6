"""What both transports share: their configuration, the backend names, and the deadline timer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from gevent import getcurrent
from gevent.hub import get_hub

from mitigations.checked_url import CheckedURL, checked_url
from mitigations.core import DeadlineExceeded
from mitigations.timeout import Timeouts

HttpBackend = Literal["requests", "fast"]
HTTP_BACKENDS: tuple[HttpBackend, ...] = ("requests", "fast")

# With no cap, the pool still needs a size: it bounds idle keep-alive sockets kept for reuse.
_UNCAPPED_POOL_SIZE = 10_000


@dataclass(frozen=True)
class TransportConfig:
    """How the transport talks to the host.

    `timeouts.connect` and `timeouts.read` are per socket operation (None: wait forever). The call's
    own deadline (stamped by the pipeline from `timeouts.total`) caps both and the whole exchange.
    `count_429`: a 429 answer counts against the server's health (an overload answer, like 503); False
    makes it a plain client error, as any other 4xx.
    """

    base_url: str
    max_connections: int | None = None
    keep_alive: bool = False
    timeouts: Timeouts = field(default_factory=Timeouts)
    count_429: bool = True
    allow_remote: bool = False  # the sending process's own --allow-remote; the environment's counts too
    target: CheckedURL = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Checked and resolved once, here: the transports connect to these addresses and nowhere else.
        object.__setattr__(self, "target", checked_url(self.base_url, self.allow_remote))
        if self.max_connections is not None and self.max_connections < 1:
            raise ValueError(f"max_connections must be >= 1 or None, got {self.max_connections}")
        if not isinstance(self.count_429, bool):
            raise ValueError(f"count_429 must be true or false, got {self.count_429!r}")

    @property
    def pool_size(self) -> int:
        return self.max_connections or _UNCAPPED_POOL_SIZE


def arm_deadline(remaining: float | None) -> Any:
    """A timer that throws `DeadlineExceeded` into this greenlet `remaining` seconds from now, or None
    without a deadline; close it in a `finally`. What `gevent.Timeout(remaining, DeadlineExceeded)` does
    (the same libev timer, the same `throw`, the loop's time updated first), without the Timeout object
    around it, which cost about 2.5 µs of every call."""
    if remaining is None:
        return None
    timer = get_hub().loop.timer(remaining, priority=-1)  # as gevent.Timeout makes it
    timer.start(getcurrent().throw, DeadlineExceeded, update=True)
    return timer
