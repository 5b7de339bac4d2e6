"""How long the defer queue's SQLite writes block the gevent loop, three ways.

A ticker greenlet asks to wake every 1 ms and records how late it wakes (the loop stall) while
`--calls` deferrals arrive at `--rate` per second, each in its own greenlet as in a Locust run, each
followed later by its delete (the replay's end):

  none         the same greenlets and ticker, no writes: the machine's own noise;
  inline       every insert is its own transaction, run on the loop (what a naive version would do);
  batched      BatchWriter's batching, but the transaction still runs on the loop;
  threadpool   BatchWriter as shipped: batches, run in gevent's thread pool.

It also reports how long a deferral waits until its row is committed (the call's `Deferred` outcome
only comes back then). The file is real, in a temporary folder (the same disk as /tmp).

    .venv/bin/python benchmarks/defer_writes.py [--calls 3000] [--rate 1500] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import gevent

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mitigations.defer_store import BatchWriter, DeferredCall, DeferStore


def on_the_loop(function, *args):
    return function(*args)


class Nothing:
    """The baseline: the same greenlets, no writes at all (the loop's own noise on a shared machine)."""

    def insert(self, call: DeferredCall) -> None:
        pass

    def delete(self, call_id: int) -> None:
        pass

    def close(self) -> None:
        pass


class Inline:
    """No batching: one transaction per insert and per delete, on the loop."""

    def __init__(self, store: DeferStore) -> None:
        self.store = store

    def insert(self, call: DeferredCall) -> None:
        self.store.write([call], [])

    def delete(self, call_id: int) -> None:
        self.store.write([], [call_id])

    def close(self) -> None:
        self.store.close()


def ticker(stalls: list[float], stop: list[bool]) -> None:
    while not stop:
        asked = time.perf_counter()
        gevent.sleep(0.001)
        stalls.append(time.perf_counter() - asked - 0.001)


def one_run(mode: str, calls: int, rate: float, where: str | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory(dir=where) as folder:
        store = DeferStore.open(folder, f"bench-{mode}")
        if mode == "none":
            store.close()
            writer = Nothing()
        elif mode == "inline":
            writer = Inline(store)
        elif mode == "batched":
            writer = BatchWriter(store, run_blocking=on_the_loop)
        else:
            writer = BatchWriter(store)
        stalls: list[float] = []
        waits: list[float] = []
        stop: list[bool] = []
        tick = gevent.spawn(ticker, stalls, stop)

        def defer(n: int) -> None:
            started = time.perf_counter()
            writer.insert(
                DeferredCall(
                    n,
                    "POST",
                    "/doWork",
                    None,
                    {"Idempotency-Key": f"k{n}"},
                    b"x" * 64,
                    time.time(),
                    60.0,
                    2.0,
                )
            )
            waits.append(time.perf_counter() - started)
            gevent.sleep(0.05)
            writer.delete(n)

        greenlets = []
        begin = time.perf_counter()
        for n in range(1, calls + 1):
            delay = begin + n / rate - time.perf_counter()
            if delay > 0:
                gevent.sleep(delay)
            greenlets.append(gevent.spawn(defer, n))
        gevent.joinall(greenlets)
        elapsed = time.perf_counter() - begin
        stop.append(True)
        tick.join()
        writer.close()
    stalls_ms = sorted(s * 1000 for s in stalls)
    waits_ms = sorted(w * 1000 for w in waits)
    return {
        "stall_p99_ms": stalls_ms[int(0.99 * (len(stalls_ms) - 1))],
        "stall_max_ms": stalls_ms[-1],
        "commit_wait_p50_ms": statistics.median(waits_ms),
        "commit_wait_p99_ms": waits_ms[int(0.99 * (len(waits_ms) - 1))],
        "achieved_per_s": calls / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=1500.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where the files go (default: the temp folder)")
    args = parser.parse_args()
    if args.calls < 1 or args.rate <= 0 or args.rounds < 1:
        parser.error("--calls and --rounds must be 1 or more, --rate greater than 0")
    print(f"{args.calls} deferrals at {args.rate:.0f}/s, {args.rounds} rounds; median of rounds")
    heads = ("stall p99", "stall max", "commit p50", "commit p99")
    print(f"{'mode':<11} {heads[0]:>10} {heads[1]:>10} {heads[2]:>11} {heads[3]:>11} {'calls/s':>8}")
    for mode in ("none", "inline", "batched", "threadpool"):
        runs = [one_run(mode, args.calls, args.rate, args.dir) for _ in range(args.rounds)]
        med = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        print(
            f"{mode:<11} {med['stall_p99_ms']:>8.2f}ms {med['stall_max_ms']:>8.2f}ms "
            f"{med['commit_wait_p50_ms']:>9.2f}ms {med['commit_wait_p99_ms']:>9.2f}ms "
            f"{med['achieved_per_s']:>8.0f}"
        )


if __name__ == "__main__":
    main()
