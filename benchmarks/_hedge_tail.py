"""Hedging against a tail, in-process: p50, p99 and p99.9 of an open loop with and without `Hedge`.

    python benchmarks/_hedge_tail.py RATE TARGET_FLAGS...
    python benchmarks/_hedge_tail.py 45 --fault slow:rate=0.02,delay_ms=800
    python benchmarks/_hedge_tail.py 100 --latency-profile examples/latency-profile-heavy-tail.json

Starts a target with TARGET_FLAGS on a loopback port, offers RATE calls/s for 20 s through a pipeline
of the fast transport alone, then through `Hedge` with its defaults, and prints one line for each
(docs/hedging.md keeps the table). Not the issue's benchmark (that needs the comparison's `tail`
scenario); `make bench` skips it (its name starts with `_`).
"""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mitigations.core import MonotonicClock, Pipeline  # noqa: E402
from mitigations.hedge import Hedge, HedgeConfig  # noqa: E402
from mitigations.timeout import Timeouts  # noqa: E402
from mitigations.transport import TransportConfig, make_transport  # noqa: E402
from tests.conftest import launch_target  # noqa: E402
from tests.open_loop import offer  # noqa: E402
from tests.test_hedge_e2e import settled_stats  # noqa: E402

CLOCK = MonotonicClock()
SECONDS = 20


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python benchmarks/_hedge_tail.py RATE [TARGET_FLAGS...]")
    rate = float(sys.argv[1])
    server = launch_target(*sys.argv[2:], seed=3)
    try:
        for name in ("no hedge", "Hedge defaults (p95, 5 %)"):
            policies = [] if name == "no hedge" else [Hedge(HedgeConfig())]
            config = TransportConfig(base_url=server.url, timeouts=Timeouts(connect=3.0))
            pipeline = Pipeline(policies, make_transport("fast", config, CLOCK), clock=CLOCK)
            before = server.stats()
            outcomes = offer(pipeline, rate=rate, seconds=SECONDS, join_s=10)
            after = settled_stats(server, before["requests_total"], len(outcomes))
            latencies = sorted(o.latency * 1000 for o in outcomes)

            def at(p: float, values: list[float] = latencies) -> float:
                return values[min(len(values) - 1, int(p / 100 * len(values)))]

            sent = after["requests_total"] - before["requests_total"]
            extra = f", hedged {policies[0].hedged}, won {policies[0].hedge_won}" if policies else ""
            print(
                f"{name}: calls {len(outcomes)}, ok {sum(o.ok for o in outcomes)}, p50 {at(50):.0f} ms, "
                f"p99 {at(99):.0f} ms, p99.9 {at(99.9):.0f} ms, server requests {sent} "
                f"({sent / len(outcomes):.3f} per call){extra}"
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
