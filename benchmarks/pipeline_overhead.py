"""What the mitigation pipeline costs the load generator: CPU seconds per 1,000 requests.

Runs, in one go and against the same target's /ping:
  - Locust's bare FastHttpUser and bare HttpUser;
  - CombinedClient (all four seed mitigations, set loose enough never to shed) on the geventhttpclient
    (`--http-client fast`) and requests (`--http-client requests`) transports;
  - HammerClient on the fast transport, to split launcher cost from pipeline cost.
Each run offers the same rate from the same number of users, keep-alive on. The CPU is the Locust
process's own, counted between test start and stop by `_cpu_probe.py`. Target: <= 1.05x the bare client.

A whole Locust process's CPU over a 10 s run swings by +-20 % from run to run on a shared 2-core machine,
so the script also measures the pipeline alone, in this process: CPU per call through the same transport
with no policy and with the full CombinedClient set (retry, breaker, throttle, socket pool, deadline),
alternated in chunks of 100 calls. The median of the chunk-by-chunk ratios (`paired`) is stable to a
few percent where the ratio of the two medians is not. A third variant, `deadline only` (no policy, but
the total deadline), splits the deadline's share from the policies'. With the `otel` extra installed it
also runs the full pipeline traced (docs/tracing.md): a span per call and per attempt, batched to an
exporter that drops them, which is the cost of `--otel` before the network.

    .venv/bin/python benchmarks/pipeline_overhead.py [--seconds 10] [--users 20] [--rate 400] [--rounds 3]
    .venv/bin/python benchmarks/pipeline_overhead.py --pipeline-only     # the in-process part alone
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
LOCUST = str(Path(sys.executable).with_name("locust"))

LOOSE = [
    "--keep-alive",
    "true",
    "--max-concurrent",
    "10000",  # the top of its range (docs/limits.md)
    "--max-sockets",
    "1000",
    "--breaker-mode",
    "rate",
    "--failure-rate-threshold",
    "100",
    "--min-calls",
    "100000",  # the top of its range; with a 100 % threshold the breaker never opens anyway
    "--breaker-window",
    "60s",
    "--connect-timeout-ms",
    "5000",
    "--read-timeout-ms",
    "5000",
    "--request-timeout-ms",
    "10000",
    "--path",
    "/ping",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pinned(cmd: list[str], core: int) -> list[str]:
    """Pin to one core when `taskset` exists, so target and load generator don't share a core."""
    if (os.cpu_count() or 1) >= 2 and subprocess.run(
        ["which", "taskset"], capture_output=True
    ).returncode == 0:
        return ["taskset", "-c", str(core), *cmd]
    return cmd


def wait_ready(url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/ping", timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"target at {url} did not answer /ping within {timeout:.0f} s")


def run(name: str, files: str, user_class: str, extra: list[str], args, host: str, env: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.json"
        cmd = [
            LOCUST,
            "-f",
            files,
            "--headless",
            "-u",
            str(args.users),
            "-r",
            str(args.users),
            "-t",
            f"{args.seconds}s",
            "--host",
            host,
            "--only-summary",
            "--loglevel",
            "WARNING",
            *extra,
            user_class,
        ]
        subprocess.run(
            pinned(cmd, 1),
            cwd=ROOT,
            env={**env, "HAMMERLAB_CPU_PROBE": str(probe)},
            capture_output=True,
            timeout=args.seconds + 60,
        )
        if not probe.exists():
            raise SystemExit(f"{name}: locust wrote no CPU probe; run it by hand to see why")
        record = json.loads(probe.read_text())
    record["name"] = name
    record["cpu_per_1000"] = 1000 * record["cpu_s"] / max(1, record["requests"])
    return record


def pipeline_cost(host: str, rounds: int, calls: int = 100) -> dict[str, dict[str, float]]:
    """CPU microseconds per call, median over chunks of `calls` calls: one transport alone vs behind the
    full pipeline. The variants take turns chunk by chunk (40 chunks a round, the order flipped every
    chunk), so a neighbour's burst on a shared core hits both sides of each pair; `paired` is the
    median of the chunk-by-chunk ratios to the transport alone, the steadier figure."""
    sys.path.insert(0, str(ROOT))
    from mitigations import (
        Call,
        CircuitBreaker,
        CircuitBreakerConfig,
        Pipeline,
        Retry,
        RetryConfig,
        SocketPool,
        SocketPoolConfig,
        Throttle,
        ThrottleConfig,
        Timeouts,
    )
    from mitigations.transport import HTTP_BACKENDS, TransportConfig, make_transport

    def full() -> list:
        breaker = CircuitBreakerConfig(
            mode="rate", window_type="time", window_size=60, minimum_calls=1_000_000
        )
        return [
            Retry(RetryConfig()),
            CircuitBreaker(breaker),
            Throttle(ThrottleConfig(max_concurrent=100_000)),
            SocketPool(SocketPoolConfig(max_sockets=1000, keep_alive=True)),
        ]

    costs: dict[str, dict[str, list[float]]] = {}
    for backend in HTTP_BACKENDS:
        config = TransportConfig(host, max_connections=1000, keep_alive=True, timeouts=Timeouts(5.0, 5.0))
        transport = make_transport(backend, config)
        variants = {
            "transport alone": Pipeline([], transport),
            # No policy, but a total deadline: the deadline's share of the full pipeline's cost (the
            # timer armed around each attempt and the propagated deadline header).
            "deadline only": Pipeline([], transport, total_timeout=10.0),
            "full pipeline": Pipeline(full(), transport, total_timeout=10.0),
        }
        tracer = _dropping_tracer()
        if tracer is not None:
            from mitigations.tracing import CallTracer

            traced = Pipeline(full(), transport, total_timeout=10.0)
            traced.trace(CallTracer(client="bench", transport=transport, tracer=tracer))
            variants["full pipeline, traced"] = traced
        costs[backend] = {name: [] for name in variants}
        order = list(variants.items())
        for chunk in range(40 * rounds):
            for name, pipeline in order if chunk % 2 == 0 else reversed(order):
                started = time.process_time()
                for _ in range(calls):
                    clock = pipeline.clock
                    outcome = pipeline.execute(Call("GET", "/ping", launched_at=clock.now()))
                    if not outcome.ok:
                        raise SystemExit(f"{backend} {name}: /ping failed with {outcome.kind}")
                costs[backend][name].append((time.process_time() - started) / calls * 1e6)
        transport.close()
    result: dict[str, dict[str, float]] = {}
    for backend, by in costs.items():
        alone = by["transport alone"]
        result[backend] = {name: statistics.median(v) for name, v in by.items()}
        for name, v in by.items():
            pairs = zip(v, alone, strict=True)
            result[backend][f"{name}, paired"] = statistics.median(x / a for x, a in pairs)
    return result


def _dropping_tracer():
    """A tracer whose spans are batched, as Locust's OTLP set-up does, to an exporter that drops them;
    None without the `otel` extra."""
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    except ImportError:
        return None

    class Dropping(SpanExporter):
        def export(self, spans):
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Dropping()))
    return provider.get_tracer("bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--rate", type=float, default=400.0, help="total requests/s offered")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each client; the median counts")
    parser.add_argument("--pipeline-only", action="store_true", help="only the in-process pipeline cost")
    args = parser.parse_args()
    if args.seconds < 2 or args.users < 1 or args.rate <= 0 or args.rounds < 1:
        parser.error("--seconds must be >= 2, --users >= 1, --rate > 0, --rounds >= 1")

    per_user = args.rate / args.users
    env = {**os.environ, "BENCH_RATE_PER_USER": str(per_user), "PYTHONPATH": str(ROOT)}
    port = free_port()
    host = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        pinned([sys.executable, "-m", "target_server", "--port", str(port), "--quiet"], 0),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(host)
        probe = str(BENCH / "_cpu_probe.py")
        bare = f"{BENCH / '_bare_users.py'},{probe}"
        ours = f"locustfiles/clients.py,{probe}"
        loose = [*LOOSE, "--launch-rate", str(per_user)]
        plan = [
            ("bare FastHttpUser", bare, "BareFastHttpUser", []),
            ("CombinedClient (fast)", ours, "CombinedClient", [*loose, "--http-client", "fast"]),
            ("HammerClient (fast)", ours, "HammerClient", [*loose, "--http-client", "fast"]),
            ("bare HttpUser", bare, "BareHttpUser", []),
            ("CombinedClient (requests)", ours, "CombinedClient", [*loose, "--http-client", "requests"]),
            ("HammerClient (requests)", ours, "HammerClient", [*loose, "--http-client", "requests"]),
        ]
        samples: dict[str, list[dict]] = {name: [] for name, *_ in plan}
        in_process = pipeline_cost(host, rounds=max(5, args.rounds))
        for round_ in range(0 if args.pipeline_only else args.rounds):
            # Alternate the order each round so drift on a noisy machine hits every run alike.
            for name, files, user_class, extra in plan if round_ % 2 == 0 else reversed(plan):
                samples[name].append(run(name, files, user_class, extra, args, host, env))
                print(f"  round {round_ + 1}: {name:<28} {samples[name][-1]['cpu_per_1000']:.3f}", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=10)

    if not args.pipeline_only:
        locust_table(samples, args)
    print("\nthe pipeline alone, in one process: CPU us per call to /ping, median of alternated chunks")
    for backend, by in in_process.items():
        alone, full = by["transport alone"], by["full pipeline"]
        ratio = full / alone
        paired = by["full pipeline, paired"]
        line = (
            f"{backend:<9} transport alone {alone:6.1f}  full pipeline {full:6.1f}  ratio {ratio:.2f}x"
            f"  paired {paired:.2f}x  (deadline only: paired {by['deadline only, paired']:.2f}x)"
        )
        if "full pipeline, traced" in by:
            traced = by["full pipeline, traced"]
            line += f"  traced {traced:6.1f} (+{traced - full:.1f} us a call, {traced / full:.2f}x)"
        print(line)


def locust_table(samples: dict[str, list[dict]], args) -> None:
    median = {name: statistics.median(r["cpu_per_1000"] for r in runs) for name, runs in samples.items()}
    print(
        f"\nmedian of {args.rounds} rounds, {args.users} users, {args.rate:.0f} req/s, {args.seconds} s each"
    )
    print(f"{'run':<28}{'requests':>10}{'CPU s / 1000 req':>18}")
    for name, runs in samples.items():
        requests = int(statistics.median(r["requests"] for r in runs))
        print(f"{name:<28}{requests:>10}{median[name]:>18.3f}")
    for ours, bare in (
        ("CombinedClient (fast)", "bare FastHttpUser"),
        ("CombinedClient (requests)", "bare HttpUser"),
    ):
        # Each round's pair ran back to back: the spread of their ratios shows how much the machine moved.
        pairs = zip(samples[ours], samples[bare], strict=True)
        rounds = sorted(o["cpu_per_1000"] / b["cpu_per_1000"] for o, b in pairs)
        spread = ", ".join(f"{r:.2f}" for r in rounds)
        print(f"ratio {ours} / {bare}: {median[ours] / median[bare]:.2f}x  (target <= 1.05; rounds {spread})")


if __name__ == "__main__":
    main()
