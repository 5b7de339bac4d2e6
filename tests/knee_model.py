"""A model server stepped in virtual time, for the adaptive limit's unit tests: `servers` workers of a
fixed service time behind one FIFO queue, so its knee is known (`servers` calls in flight) and so is its
capacity (`servers / service` answers per second). Past the knee every extra call only queues, and the
RTT of L calls in flight is `L * service / servers`.

Each client offers an open-loop load (launches on a fixed schedule whatever happens) through its own
limit, admitted as `AdaptiveLimit` admits (at most `int(estimate)` in flight, over it shed at once), and
every answer is one `Sample` for the client's algorithm, as `AdaptiveLimit._observe` builds it. No
greenlets, no sleeping: thousands of virtual seconds run in well under a second.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import deque
from dataclasses import dataclass, field

from mitigations.adaptive_base import LimitAlgorithm, Sample


@dataclass
class ModelClient:
    algorithm: LimitAlgorithm
    rate: float  # launches per second
    start: float = 0.0  # when it starts launching (a late joiner)
    rng: random.Random | None = None  # Poisson launches when given; else a fixed schedule
    estimate: float = field(init=False)
    in_flight: int = 0
    answered: list[float] = field(default_factory=list)  # finish times
    limits: list[tuple[float, float]] = field(default_factory=list)  # (time, limit) each 0.1 s

    def __post_init__(self) -> None:
        self.estimate = self.algorithm.initial_limit

    @property
    def limit(self) -> int:
        return max(1, int(self.estimate))

    def goodput(self, start: float, end: float) -> float:
        return sum(start <= t < end for t in self.answered) / (end - start)

    def mean_limit(self, start: float, end: float) -> float:
        values = [v for t, v in self.limits if start <= t < end]
        return sum(values) / len(values)


class ModelServer:
    def __init__(self, servers: int, service: float) -> None:
        self.servers = servers
        self.service = service
        self.busy = 0
        self.queue: deque[tuple[ModelClient, float, int]] = deque()

    @property
    def capacity(self) -> float:
        return self.servers / self.service

    @property
    def knee(self) -> float:
        return self.servers

    def service_time(self) -> float:
        """Of the call starting now."""
        return self.service


class SoftModelServer(ModelServer):
    """A soft knee, the lab's target as its client sees it: one worker whose rate grows with its queue,
    `capacity * n / (n + k)` answers per second with n calls in flight (Michaelis-Menten), so the RTT,
    `(n + k) / capacity`, grows linearly from the first call and throughput never quite stops growing.
    The lab's server at 2 x C fits k = 2.4 (static caps 8 to 48: 0.78 to 0.97 of the best).

    Its knee is where throughput stops growing *enough*: its elasticity with concurrency, k / (n + k),
    falls to `elasticity` (1 % more calls bring that many % more answers), at n = k (1 - e) / e."""

    def __init__(self, capacity: float, k: float, elasticity: float) -> None:
        super().__init__(1, 1.0 / capacity)
        self.k = k
        self.elasticity = elasticity

    @property
    def knee(self) -> float:
        return self.k * (1 - self.elasticity) / self.elasticity

    def service_time(self) -> float:
        n = self.busy + len(self.queue)  # the starting call included (already counted busy)
        return self.service * (n + self.k) / max(1, n)


def simulate(server: ModelServer, clients: list[ModelClient], until: float) -> None:
    """Run every client against `server` until `until` virtual seconds."""
    events: list[tuple[float, int, str, object]] = []
    seq = itertools.count()
    for client in clients:
        heapq.heappush(events, (client.start, next(seq), "launch", client))
    heapq.heappush(events, (0.0, next(seq), "trace", None))

    def start(now: float) -> None:
        while server.busy < server.servers and server.queue:
            job = server.queue.popleft()
            server.busy += 1
            heapq.heappush(events, (now + server.service_time(), next(seq), "finish", job))

    while events:
        now, _, kind, payload = heapq.heappop(events)
        if now > until:
            break
        if kind == "trace":
            for client in clients:
                if now >= client.start:
                    client.limits.append((now, client.limit))
            heapq.heappush(events, (now + 0.1, next(seq), "trace", None))
        elif kind == "launch":
            client = payload  # type: ignore[assignment]
            if client.in_flight < client.limit:
                client.in_flight += 1
                server.queue.append((client, now, client.in_flight))
                start(now)
            gap = client.rng.expovariate(client.rate) if client.rng else 1.0 / client.rate
            heapq.heappush(events, (now + gap, next(seq), "launch", client))
        else:
            client, admitted, in_flight = payload  # type: ignore[misc]
            server.busy -= 1
            client.in_flight -= 1
            client.answered.append(now)
            sample = Sample(at=now, rtt=now - admitted, in_flight=in_flight, dropped=False)
            client.estimate = client.algorithm.update(client.estimate, sample)
            start(now)


def jain(values: list[float]) -> float:
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values))
