"""Losing a worker across hosts made of network namespaces (tests/netns_hosts.py). Not a test module.

Run as host A of a private world (`run_in_world`, from tests/test_lost_worker_netns.py). Host A runs the
target (0.0.0.0:3000, i.e. 10.200.0.1 and A's veth ends) and the Locust master (10.200.0.1:5557); hosts
B and C run one worker each; their host names (`host-b`, `host-c`) start their Locust worker ids.
Once both workers report:

  - at +1 s C is cut off (A's end of its veth goes down) and at +7 s brought back: Locust marks it
    missing about 4 s after the cut, the master marks it lost, and when its link is back it reports
    again and must be counted once;
  - at +9 s B is killed with SIGKILL: lost for good.

The master runs `-t RUN_S`; the script prints one JSON object: the master's exit code, the prefix of its
CSV files, and the times (since both workers reported) of the cut, the restore and the kill.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.netns_hosts import HOST_A, hosts  # noqa: E402

TARGET_PORT = 3000
MASTER_PORT = 5557
RUN_S = 15
RATE = 20.0  # per worker: light, so the machine's two cores are not the story
CUT_AT_S, RESTORE_AT_S, KILL_AT_S = 1.0, 7.0, 9.0
LOCUST = [sys.executable, "-m", "locust", "-f", "locustfiles"]


def workers_reporting(prefix: Path) -> set[str]:
    path = Path(f"{prefix}_mitigations.csv")
    if not path.exists():
        return set()
    with path.open(newline="") as handle:
        return {row["worker"] for row in csv.DictReader(handle)} - {"all"}


def main(out: Path) -> dict[str, object]:
    prefix = out / "HammerClient"
    log = (out / "target.log").open("w")
    target = subprocess.Popen(
        [sys.executable, "-m", "target_server", "--host", "0.0.0.0", "--port", str(TARGET_PORT), "--quiet"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    master_log = (out / "master.log").open("w")
    master = subprocess.Popen(
        [
            *LOCUST, "--headless", "--master", "--master-bind-host", HOST_A,
            "--master-bind-port", str(MASTER_PORT), "--expect-workers", "2",
            "--expect-workers-max-wait", "30",
            "-u", "2", "-r", "2",
            "-t", f"{RUN_S}s", "--host", f"http://{HOST_A}:{TARGET_PORT}", "--allow-remote",
            "--launch-rate", f"{RATE:g}", "--drain-s", "1", "--csv", str(prefix), "--exit-code-on-error", "0",
            "--only-summary", "HammerClient",
        ],
        cwd=ROOT, stdout=master_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    times: dict[str, float] = {}
    try:
        with hosts("B", "C") as net:
            worker = [*LOCUST, "--worker", "--master-host", HOST_A, "--master-port", str(MASTER_PORT)]
            logs = {name: (out / f"worker-{name}.log").open("w") for name in net}
            started = {
                name: host.popen([*worker, "--allow-remote", "HammerClient"], stdout=logs[name],
                                 stderr=subprocess.STDOUT)
                for name, host in net.items()
            }  # fmt: skip
            deadline = time.monotonic() + 60
            while len(workers_reporting(prefix)) < 2:
                if time.monotonic() > deadline or master.poll() is not None:
                    raise RuntimeError("the two workers never reported")
                time.sleep(0.1)
            zero = time.monotonic()
            steps = [(CUT_AT_S, "cut", net["C"].cut), (RESTORE_AT_S, "restore", net["C"].restore),
                     (KILL_AT_S, "kill", lambda: started["B"].send_signal(signal.SIGKILL))]  # fmt: skip
            for at, name, act in steps:
                time.sleep(max(0.0, zero + at - time.monotonic()))
                act()
                times[name] = round(time.monotonic() - zero, 2)
            master.wait(timeout=RUN_S + 60)
    finally:
        for process in (master, target):
            if process.poll() is None:
                process.kill()
                process.wait()
    return {"returncode": master.returncode, "prefix": str(prefix), "times": times}


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
