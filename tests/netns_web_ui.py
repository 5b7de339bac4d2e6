"""Run inside a private network namespace (tests/test_web_ui_guard.py starts it with `unshare -n`).

There the only interface is `lo`, with 127.0.0.1 and an extra 10.200.0.1/32, so a client that connects
to 10.200.0.1 is a non-loopback peer and nothing can leave the machine (FIELD-NOTES §6). It starts a
target and two Locust web UIs:

  - `dual`: `--web-host ::` (every interface, dual stack): an IPv4 client is seen as ::ffff:a.b.c.d;
  - `conf`: no --web-host, so locust.conf decides where the UI listens.

and prints one JSON object of what each request got. Not a test module (no `test_` prefix).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import launch_target  # noqa: E402
from tests.locust_run import LOCUST  # noqa: E402

OTHER = "10.200.0.1"
OUTAGE = {"kind": "outage", "duration_s": 5}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def call(url: str, method: str = "GET", body: object = None, headers: dict[str, str] | None = None) -> object:
    """The status code, or the connection error's name."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError as error:
        reason = getattr(error, "reason", error)
        return type(reason).__name__


def start_locust(port: int, target: str, *args: str) -> subprocess.Popen[bytes]:
    argv = [LOCUST, "--web-port", str(port), "--host", target, *args, "HammerClient"]
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_until_up(url: str) -> None:
    deadline = time.monotonic() + 30
    while call(url) != 200:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not come up")
        time.sleep(0.2)


def main() -> None:
    target = launch_target()
    dual_port, conf_port = free_port(), free_port()
    dual = start_locust(dual_port, target.url, "--web-host", "::")
    conf = start_locust(conf_port, target.url)
    json_type = {"Content-Type": "application/json"}
    results: dict[str, object] = {}
    try:
        wait_until_up(f"http://127.0.0.1:{dual_port}/hammerlab/live")
        wait_until_up(f"http://127.0.0.1:{conf_port}/hammerlab/live")
        other, local = f"http://{OTHER}:{dual_port}", f"http://127.0.0.1:{dual_port}"
        results["remote_fault"] = call(other + "/hammerlab/faults", "POST", OUTAGE, json_type)
        results["faults_after_remote"] = [f["kind"] for f in target.stats()["faults"]]
        results["remote_live"] = call(other + "/hammerlab/live")
        results["remote_csv"] = call(other + "/hammerlab/server.csv")
        results["remote_delete"] = call(other + "/hammerlab/faults", "DELETE")
        results["mapped_loopback_live"] = call(local + "/hammerlab/live")
        results["mapped_loopback_fault"] = call(local + "/hammerlab/faults", "POST", OUTAGE, json_type)
        results["faults_after_local"] = [f["kind"] for f in target.stats()["faults"]]
        results["conf_on_other_address"] = call(f"http://{OTHER}:{conf_port}/")
        results["conf_on_loopback"] = call(f"http://127.0.0.1:{conf_port}/")
    finally:
        for proc in (dual, conf):
            proc.terminate()
        for proc in (dual, conf):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        target.stop()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
