"""Where the pipeline's own CPU goes, per policy: microseconds a call over an instant transport.

`pipeline_overhead.py` measures the whole pipeline against a real socket, where one run's noise is as big
as one policy's cost. This splits it: each policy of CombinedClient's set alone (behind the total
deadline, as in CombinedClient), the deadline alone and the full set, over a transport that answers at
once, alternated in chunks of 100 calls; each figure is the median of the chunk-by-chunk differences to
the pipeline with no policy and no deadline.

A tight loop keeps every policy's objects in the CPU's caches, which a real call (socket, kernel, hub)
does not: a policy cost 2-4x its tight-loop figure on the socket. `--cold-mb N` makes the transport
rewrite an N MB buffer per call, which evicts the caches as a real exchange does (about 95 us a call
with 2 MB); the differences then come closer to what the socket shows.

    .venv/bin/python benchmarks/pipeline_per_policy.py [--chunks 60] [--cold-mb 0]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mitigations import (  # the checkout's own package, not an installed one
    SYSTEM_CLOCK,
    Call,
    CircuitBreaker,
    CircuitBreakerConfig,
    Outcome,
    Pipeline,
    Retry,
    RetryConfig,
    SocketPool,
    SocketPoolConfig,
    Throttle,
    ThrottleConfig,
)

CALLS = 100  # a chunk


class InstantTransport:
    """Answers 200 at once; with `cold_bytes`, rewrites that many bytes first to evict the caches."""

    def __init__(self, cold_bytes: int) -> None:
        self.buffer = bytearray(cold_bytes)

    def send(self, call: Call) -> Outcome:
        if self.buffer:
            self.buffer[:] = self.buffer
        return Outcome(call=call, finished_at=SYSTEM_CLOCK.now(), status=200)


def policies() -> dict[str, list]:
    """CombinedClient's policies as `pipeline_overhead.py` sets them (loose enough never to shed)."""
    breaker = CircuitBreakerConfig(mode="rate", window_type="time", window_size=60, minimum_calls=1_000_000)
    return {
        "retry": [Retry(RetryConfig())],
        "breaker": [CircuitBreaker(breaker)],
        "throttle": [Throttle(ThrottleConfig(max_concurrent=100_000))],
        "socket pool": [SocketPool(SocketPoolConfig(max_sockets=1000, keep_alive=True))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=60, help="chunks of 100 calls per variant")
    parser.add_argument("--cold-mb", type=float, default=0.0, help="MB the transport rewrites per call")
    args = parser.parse_args()
    if args.chunks < 2 or not 0 <= args.cold_mb <= 64:
        parser.error("--chunks must be >= 2 and --cold-mb in [0, 64]")

    transport = InstantTransport(int(args.cold_mb * (1 << 20)))
    full = [policy for group in policies().values() for policy in group]
    variants = {"no policy, no deadline": Pipeline([], transport)}
    variants["deadline only"] = Pipeline([], transport, total_timeout=10.0)
    for name, group in policies().items():
        variants[name] = Pipeline(group, transport, total_timeout=10.0)
    variants["full pipeline"] = Pipeline(full, transport, total_timeout=10.0)

    costs: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants.items())
    for chunk in range(args.chunks):
        for name, pipeline in order if chunk % 2 == 0 else reversed(order):
            now = pipeline.clock.now
            started = time.process_time_ns()
            for _ in range(CALLS):
                pipeline.execute(Call("GET", "/ping", launched_at=now()))
            costs[name].append((time.process_time_ns() - started) / CALLS / 1000)
    base = costs["no policy, no deadline"]
    print(f"CPU us a call, median of {args.chunks} alternated chunks, transport rewriting {args.cold_mb} MB")
    print(f"{'variant':<24}{'us a call':>10}{'added':>8}")
    for name, values in costs.items():
        added = statistics.median(v - b for v, b in zip(values, base, strict=True))
        print(f"{name:<24}{statistics.median(values):>10.2f}{added:>+8.2f}")


if __name__ == "__main__":
    main()
