"""Measure the target's capacity C with a short closed-loop saturation probe.

A fixed number of workers each send `GET /doWork` back to back (a closed loop, so the probe itself
cannot overload the server past its knee). After a warm-up, 2xx answers per second is C.

It uses the same transport as the Locust clients (geventhttpclient, a new connection per request, as
the seed's client did), so C is what those clients can get, connection set-up included. It runs on
gevent's own sockets without monkey-patching, so the rest of the runner keeps plain blocking I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gevent

from mitigations.core import SYSTEM_CLOCK
from mitigations.request import RequestSpec
from mitigations.timeout import Timeouts
from mitigations.transport import TransportConfig, make_transport

# Throughput climbs with concurrency up to about 48 in flight here (16: ~86/s, 48-96: ~92-96/s, the rate
# the server reaches under an open-loop overload too); past that it only queues.
PROBE_WORKERS = 48
WARMUP_S = 1.0  # longer than one closed-loop round (48 x ~11 ms), so the first burst is not counted
MAX_REQUESTS = 20_000


@dataclass(frozen=True)
class ProbeResult:
    capacity_rps: float
    ok: int
    failed: int
    seconds: float
    workers: int

    def describe(self) -> str:
        return (
            f"capacity C = {self.capacity_rps:.1f} requests/s ({self.ok} ok, {self.failed} failed in "
            f"{self.seconds:.1f} s, {self.workers} closed-loop workers)"
        )


class ProbeError(RuntimeError):
    """The probe saw no successful request: the target cannot be measured."""


def measure_capacity(
    url: str,
    seconds: float = 3.0,
    workers: int = PROBE_WORKERS,
    should_stop: Callable[[], bool] = lambda: False,
    request: RequestSpec | None = None,
    allow_remote: bool = False,
) -> ProbeResult:
    """Saturate `url` for WARMUP_S + `seconds`, count 2xx answers finished in the measured window.
    `should_stop` is polled before every request, so an interrupt ends the probe within one request.
    `request` is what the clients send (--method, --path, --header, --body); GET /doWork by default.
    `allow_remote`: the comparison's own --allow-remote (the transport checks `url` either way)."""
    spec = request or RequestSpec()
    clock = SYSTEM_CLOCK
    transport = make_transport(
        "fast",
        TransportConfig(base_url=url, timeouts=Timeouts(connect=2.0, read=5.0), allow_remote=allow_remote),
        clock,
    )
    start = clock.now()
    window_start = start + WARMUP_S
    window_end = window_start + seconds
    counts = {"ok": 0, "failed": 0, "sent": 0}

    def worker() -> None:
        while clock.now() < window_end and counts["sent"] < MAX_REQUESTS and not should_stop():
            counts["sent"] += 1
            launched = clock.now()
            outcome = transport.send(spec.call(launched, deadline=launched + 5.0))
            if window_start <= outcome.finished_at <= window_end:
                counts["ok" if outcome.ok else "failed"] += 1

    greenlets = [gevent.spawn(worker) for _ in range(workers)]
    try:
        gevent.joinall(greenlets, timeout=WARMUP_S + seconds + 6.0)
    finally:
        gevent.killall(greenlets, block=True, timeout=2.0)
        transport.close()
    if counts["ok"] == 0:
        raise ProbeError(
            f"the capacity probe got no successful {spec.line} from {url} ({counts['failed']} failed); "
            "pass --capacity N to skip it"
        )
    return ProbeResult(counts["ok"] / seconds, counts["ok"], counts["failed"], seconds, workers)
