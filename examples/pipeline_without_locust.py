"""The mitigations without Locust: a plain gevent program sending through one shared pipeline.

    python examples/pipeline_without_locust.py http://127.0.0.1:3000

It launches 300 requests at 150/s, open loop, through a breaker and a throttle, and prints how each
ended. Plain Python on gevent: no Locust import, no monkey-patching needed (the transport is gevent's).
"""

import collections
import sys

import gevent

from mitigations import (
    SYSTEM_CLOCK,
    Call,
    CircuitBreaker,
    CircuitBreakerConfig,
    Pipeline,
    Throttle,
    ThrottleConfig,
    Timeouts,
)
from mitigations.transport import FastTransport, TransportConfig


def main(host: str, rate: float = 150.0, count: int = 300) -> collections.Counter:
    transport = FastTransport(TransportConfig(host, timeouts=Timeouts(connect=1.0, read=1.0)))
    pipeline = Pipeline(
        [
            CircuitBreaker(
                CircuitBreakerConfig(mode="rate", window_type="time", window_size=5, minimum_calls=20)
            ),
            Throttle(ThrottleConfig(max_concurrent=8)),
        ],
        transport,
        total_timeout=2.0,
    )
    pipeline.events.on("state", lambda policy, old, new: print(f"{policy.name}: {old} -> {new}"))
    start = SYSTEM_CLOCK.now()
    jobs = []
    for i in range(count):
        launch_at = start + i / rate
        gevent.sleep(max(0.0, launch_at - SYSTEM_CLOCK.now()))
        jobs.append(gevent.spawn(pipeline.execute, Call("GET", "/doWork", launched_at=launch_at)))
    gevent.joinall(jobs, timeout=30)
    transport.close()
    return collections.Counter(job.value.kind for job in jobs if job.value is not None)


if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1].startswith("http"):
        sys.exit("usage: python examples/pipeline_without_locust.py http://127.0.0.1:3000")
    for kind, n in sorted(main(sys.argv[1]).items()):
        print(f"{kind:>20}: {n}")
