"""SocketPool: at most `max_sockets` calls on the wire at once, the seed's `http.Agent({maxSockets})`.

The seed's agent used `maxSockets: Infinity` and no keep-alive, so every request opened a new TCP
connection and an overloaded server ended up with hundreds of sockets. Capping `maxSockets` makes the
extra requests wait inside the client for a free socket, in an unbounded FIFO queue, as Node's agent
does. That wait is the hidden cost of pooling, so here it is made visible (`waiting`, wait times) and
bounded by the call's deadline (`Pipeline(total_timeout=...)`, counted from launch, as the seed's
REQUEST_TIMEOUT was): a call still waiting when too little of its deadline is left to send it (its
`send_by`, half the deadline by default) is shed with `QueuedPastDeadline` (cause `deadline`) and never
reaches the wire; so is a call that arrives past that point.

This policy is only the admission half. The transport sizes its connection pool to `max_sockets` and
honours `keep_alive` (see `transport.TransportConfig`), so admitted calls always find a connection.
Put it innermost, right before the transport, so nothing else sits between a socket and the wire.
"""

from __future__ import annotations

from dataclasses import dataclass

from mitigations._checks import check_int
from mitigations.admission import GatedPolicy


@dataclass(frozen=True)
class SocketPoolConfig:
    """`max_sockets` connections per client process and host (None: unlimited, the seed's Infinity);
    `keep_alive` reuses them between requests (the seed did not)."""

    max_sockets: int | None = None
    keep_alive: bool = False

    def __post_init__(self) -> None:
        if self.max_sockets is not None:
            check_int("SocketPoolConfig", "max_sockets", self.max_sockets, minimum=1)
        if not isinstance(self.keep_alive, bool):
            raise ValueError(f"SocketPoolConfig.keep_alive must be true or false, got {self.keep_alive!r}")


class SocketPool(GatedPolicy):
    """Admits at most `config.max_sockets` calls to the transport; the rest wait FIFO until the deadline.

    Gauges: `in_use` (calls holding a socket), `waiting`: `GatedPolicy`'s `in_flight` and `queued`,
    named for sockets here and on the board (`pool_in_use`, `pool_waiting`). Counters: `admitted`,
    `expired` (shed with QueuedPastDeadline). Wait for a socket: `waits` (calls that had to wait),
    `total_wait`, `last_wait` (seconds), `mean_wait`.
    """

    name = "socket-pool"
    in_flight_gauge = "pool_in_use"
    queued_gauge = "pool_waiting"
    # Wait for a socket in line, until the call's deadline; no deadline means as long as it takes, as
    # Node's agent does.
    queue = True
    queue_timeout = None

    def __init__(self, config: SocketPoolConfig) -> None:
        super().__init__(config.max_sockets, queue_limit=None)
        self.config = config

    @property
    def in_use(self) -> int:
        return self.in_flight

    @property
    def waiting(self) -> int:
        return self.queued

    @property
    def mean_wait(self) -> float:
        return self.gate.total_wait / self.gate.waits if self.gate.waits else 0.0
