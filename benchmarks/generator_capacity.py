"""How fast can one Locust process generate load? The highest rate it sustains against /ping.

For each client (Locust's bare FastHttpUser, HammerClient and CombinedClient on the fast transport) the
script offers rising rates from one Locust process, pinned to one core with the target on the other
(`taskset`, where the machine has two cores or more), and keeps the highest rate it sustains:

  - sustained = in the steady window (after a 2 s warm-up, until the test starts stopping) the process
    completed at least 99 % of the offered requests per second and, for the Hammerlab clients, skipped
    fewer than 1 % of its launch slots (`csv_schema.SKIP_WARN_SHARE`); a rate that misses is tried once
    more (noise from other work on the machine only ever costs), and the better try counts;
  - the search climbs in steps of `--step` until a rate fails, then bisects twice between the last
    rate that held and the first that did not.

Every client keeps its connections alive (the bare FastHttpUser always does; the Hammerlab clients get
`--keep-alive true`), and CombinedClient's limits are set loose enough never to shed, so every client
does the same work on the wire. The bare user is closed-loop (`constant_throughput`) with enough users
that each needs a few ms per request; the Hammerlab clients are open-loop, 10 users each launching a
tenth of the rate. The table gives each client's rate and its ratio to the bare FastHttpUser.

    .venv/bin/python benchmarks/generator_capacity.py [--seconds 6] [--start 500] [--step 500] [--max 8000]
    .venv/bin/python benchmarks/generator_capacity.py --profile HammerClient --rate 2000   # cProfile

`--profile CLASS` runs one Locust process under cProfile at `--rate` and prints its top entries by own
time (`tottime`) and by cumulative time, from the launcher, the pipeline and the reporter down.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.pipeline_overhead import LOOSE, free_port, pinned, wait_ready

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
LOCUST = str(Path(sys.executable).with_name("locust"))
PROBE = str(BENCH / "_rate_probe.py")
SUSTAINED = 0.99  # of the offered rate, completed
SKIP_SHARE = 0.01  # of the intended launches, skipped
OPEN_USERS = 10
BARE_USERS = 40


@dataclass(frozen=True)
class Client:
    name: str
    files: str
    user_class: str
    extra: tuple[str, ...]
    open_loop: bool


CLIENTS = (
    Client("bare FastHttpUser", f"{PROBE},{BENCH / '_bare_users.py'}", "BareFastHttpUser", (), False),
    Client("HammerClient (fast)", f"{PROBE},locustfiles/clients.py", "HammerClient",
           ("--keep-alive", "true", "--path", "/ping"), True),
    Client("CombinedClient (fast)", f"{PROBE},locustfiles/clients.py", "CombinedClient", tuple(LOOSE), True),
)  # fmt: skip


@dataclass(frozen=True)
class Trial:
    offered: float
    achieved: float
    skipped_share: float
    cpu_share: float  # of one core, in the steady window
    target_cpu: float | None = None  # the target's share of a core over the whole trial
    cpu_us: float = 0.0  # the Locust process's CPU per request sent, in the steady window

    @property
    def per_core(self) -> float:
        """The rate this CPU cost per request would reach with a whole core to itself."""
        return 1e6 / self.cpu_us if self.cpu_us else 0.0

    @property
    def sustained(self) -> bool:
        return self.achieved >= SUSTAINED * self.offered and self.skipped_share < SKIP_SHARE


def locust_command(
    client: Client, rate: float, seconds: float, host: str
) -> tuple[list[str], dict[str, str]]:
    users = OPEN_USERS if client.open_loop else BARE_USERS
    per_user = rate / users
    env = {**os.environ, "BENCH_RATE_PER_USER": str(per_user), "PYTHONPATH": str(ROOT)}
    command = [
        LOCUST, "-f", client.files, "--headless", "-u", str(users), "-r", str(users), "-t", f"{seconds:g}s",
        "--host", host, "--only-summary", "--loglevel", "WARNING", "--stop-timeout", "2",
        *(("--launch-rate", f"{per_user:.3f}") if client.open_loop else ()), *client.extra, client.user_class,
    ]  # fmt: skip
    return command, env


def cpu_seconds(pid: int | None) -> float | None:
    """A process's user + system CPU seconds from /proc (Linux); None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def trial(client: Client, rate: float, seconds: float, host: str, target_pid: int | None = None) -> Trial:
    before, started = cpu_seconds(target_pid), time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.json"
        command, env = locust_command(client, rate, seconds, host)
        subprocess.run(
            pinned(command, 1), cwd=ROOT, env={**env, "HAMMERLAB_RATE_PROBE": str(probe)},
            capture_output=True, timeout=seconds + 60, check=False,
        )  # fmt: skip
        if not probe.exists():
            raise SystemExit(f"{client.name} at {rate:g}/s: no probe written; run it by hand to see why")
        record = json.loads(probe.read_text())
    after = cpu_seconds(target_pid)
    target_cpu = None if before is None or after is None else (after - before) / (time.monotonic() - started)
    seconds_steady = max(1e-6, record["at"])
    intended = record["launched"] + record["skipped"]
    return Trial(
        offered=rate,
        achieved=record["requests"] / seconds_steady,
        skipped_share=record["skipped"] / intended if intended else 0.0,
        cpu_share=record["cpu"] / seconds_steady,
        target_cpu=target_cpu,
        cpu_us=1e6 * record["cpu"] / max(1.0, record["requests"]),
    )


def _score(result: Trial) -> tuple[bool, float]:
    return result.sustained, result.achieved - result.skipped_share * result.offered


def search(
    client: Client, args: argparse.Namespace, host: str, target_pid: int | None
) -> tuple[Trial | None, list[Trial]]:
    """Climb by `step` until a rate fails, then bisect twice. Returns the best sustained trial."""
    trials: list[Trial] = []

    def run(rate: float) -> Trial:
        result = trial(client, rate, args.seconds, host, target_pid)
        if not result.sustained:  # on a shared machine noise only ever costs: a miss gets one more try
            result = max(result, trial(client, rate, args.seconds, host, target_pid), key=_score)
        trials.append(result)
        verdict = "held" if result.sustained else "missed"
        print(
            f"  {client.name:<22} offered {rate:6.0f}/s  sent {result.achieved:7.1f}/s  skipped "
            f"{result.skipped_share:6.2%}  cpu {result.cpu_share:4.0%}  target cpu "
            f"{'n/a' if result.target_cpu is None else format(result.target_cpu, '4.0%')}  "
            f"{result.cpu_us:5.0f} us/req  {verdict}",
            flush=True,
        )
        return result

    best: Trial | None = None
    rate = args.start
    failed: float | None = None
    while rate <= args.max:
        result = run(rate)
        if not result.sustained:
            failed = rate
            break
        best = result
        rate += args.step
    low = best.offered if best else 0.0
    if failed is not None:
        for _ in range(2):
            middle = round((low + failed) / 2 / 50) * 50
            if middle <= low or middle >= failed:
                break
            result = run(middle)
            if result.sustained:
                best, low = result, middle
            else:
                failed = middle
    return best, trials


def profile(args: argparse.Namespace, host: str) -> None:
    client = next((c for c in CLIENTS if c.user_class == args.profile), None)
    if client is None:
        known = ", ".join(c.user_class for c in CLIENTS)
        raise SystemExit(f"--profile: {args.profile!r} is not one of {known}")
    command, env = locust_command(client, args.rate, args.seconds, host)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "locust.prof"
        profiled = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "locust", *command[1:]]
        limit = args.seconds + 120
        command = pinned(profiled, 1)
        subprocess.run(command, cwd=ROOT, env=env, capture_output=True, timeout=limit, check=False)
        stats = pstats.Stats(str(out))
        print(f"\ncProfile of {client.name} at {args.rate:g}/s for {args.seconds:g} s: top by own time")
        stats.sort_stats("tottime").print_stats(args.top)
        print("top by cumulative time")
        stats.sort_stats("cumulative").print_stats(args.top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each trial (default 6)")
    parser.add_argument("--start", type=float, default=500.0, help="first rate tried (default 500/s)")
    parser.add_argument("--step", type=float, default=500.0, help="climb in steps of this (default 500/s)")
    parser.add_argument("--max", type=float, default=8000.0, help="highest rate tried (default 8000/s)")
    parser.add_argument("--profile", help="cProfile one client class (BareFastHttpUser, HammerClient, ...)")
    parser.add_argument("--rate", type=float, default=2000.0, help="--profile: the rate (default 2000/s)")
    parser.add_argument("--top", type=int, default=25, help="--profile: entries shown (default 25)")
    args = parser.parse_args()
    if args.seconds < 4 or args.start <= 0 or args.step <= 0 or args.max < args.start or args.rate <= 0:
        parser.error("--seconds must be >= 4 (2 s of warm-up); --start, --step, --rate > 0; --max >= --start")

    port = free_port()
    host = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        pinned([sys.executable, "-m", "target_server", "--port", str(port), "--quiet"], 0),
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_ready(host)
        if args.profile:
            profile(args, host)
            return
        started = time.monotonic()
        best: dict[str, Trial | None] = {}
        for client in CLIENTS:
            best[client.name], _ = search(client, args, host, server.pid)
    finally:
        server.terminate()
        server.wait(timeout=10)

    bare = best[CLIENTS[0].name]
    print(f"\nhighest rate one Locust process sustains against /ping ({time.monotonic() - started:.0f} s)")
    print(f"{'client':<24}{'rate/s':>9}{'sent/s':>9}{'skipped':>9}{'cpu':>6}{'vs bare':>9}"
          f"{'us/req':>8}{'per core':>10}{'vs bare':>9}")  # fmt: skip
    for client in CLIENTS:
        result = best[client.name]
        if result is None:
            print(f"{client.name:<24}{'<' + format(args.start, 'g'):>9}")
            continue
        ratio = f"{result.offered / bare.offered:.2f}x" if bare else "n/a"
        per_core = f"{result.per_core / bare.per_core:.2f}x" if bare and bare.per_core else "n/a"
        print(
            f"{client.name:<24}{result.offered:>9.0f}{result.achieved:>9.1f}{result.skipped_share:>9.2%}"
            f"{result.cpu_share:>6.0%}{ratio:>9}{result.cpu_us:>8.0f}{result.per_core:>10.0f}{per_core:>9}"
        )
    print(
        "us/req: the Locust process's CPU per request sent at that rate; per core: the rate that cost "
        "would reach with a whole core (on a shared machine the rate found is capped by the CPU the process "
        "got, not by what it costs)"
    )


if __name__ == "__main__":
    main()
