"""Run inside a private network namespace (tests/test_outbound_guard.py starts it with `unshare -n`).

Issue 18, part 1, measured: how many requests reach 10.200.0.1 (a second address on `lo`, standing for
a remote host; nothing can leave the machine, FIELD-NOTES §6) through each seam found:

  1. a URL two parsers read differently (`http://10.200.0.1\\@127.0.0.1:P`), headless and to each sender;
  2. a loopback server answering `302 Location: http://10.200.0.1/`, and `HTTP_PROXY=http://10.200.0.1:80`;
  3. the web UI: POST /user moves a class off loopback, then POST /swarm with an empty host; and two
     classes on different hosts;
  4. the web UI's form granting allow_remote, a foreign Host header, and `--rerun` of a run whose run.json
     holds --allow-remote.

Prints one JSON object: for each case, the requests that arrived at 10.200.0.1 (and status codes).
Works on the code before issue 18 too (the senders are called as each version spells them), so the
same command gives the before and after. Not a test module (no `test_` prefix).
"""

from __future__ import annotations

# ruff: noqa: E402
import gevent.monkey

gevent.monkey.patch_all()  # first, as Locust would (the senders import it): patching late deadlocks

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
LOCUST = str(Path(sys.executable).with_name("locust"))
REMOTE = "10.200.0.1"
QUIET = {"HAMMERLAB_ALLOW_REMOTE": "", "HTTP_PROXY": "", "http_proxy": ""}


class Server(ThreadingHTTPServer):
    """Counts requests; answers 200 JSON, or 302 to `redirect` when given."""

    daemon_threads = True

    def __init__(self, address: str, port: int = 0, redirect: str = "") -> None:
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def handle_one(self) -> None:
                server.requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                body = b"{}"
                self.send_response(302 if redirect else 200)
                if redirect:
                    self.send_header("Location", redirect)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = handle_one

            def log_message(self, *_: object) -> None:
                pass

        super().__init__((address, port), Handler)
        self.url = f"http://{address}:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def call(url: str, method: str = "GET", data: dict | None = None, headers: dict | None = None) -> int:
    body = None if data is None else urllib.parse.urlencode(data).encode()
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def senders(url: str) -> dict[str, object]:
    """Each outbound sender aimed once at `url`; what each did (an exception's name, or its status)."""
    from comparison import target as comparison_target
    from comparison import target_kind
    from locust_plugin import server_metrics, server_sampler, web_ui
    from mitigations.core import Call
    from mitigations.request import RequestSpec
    from mitigations.timeout import Timeouts
    from mitigations.transport import TransportConfig, make_transport

    try:
        from mitigations.checked_url import checked_url

        def target(text: str) -> object:
            return checked_url(text)
    except ImportError:  # the code before issue 18: the senders took strings

        def target(text: str) -> object:
            return text

    def attempt(send: object) -> object:
        try:
            answer = send()  # type: ignore[operator]
        except Exception as error:  # what each sender does is the measurement
            return type(error).__name__
        return getattr(answer, "status", answer)

    def transport(backend: str) -> object:
        sender = make_transport(backend, TransportConfig(url, timeouts=Timeouts(connect=1, read=1)))
        outcome = sender.send(Call("GET", "/doWork", launched_at=time.monotonic()))
        return outcome.status or (outcome.error and outcome.error.kind)

    return {
        "requests_transport": attempt(lambda: transport("requests")),
        "fast_transport": attempt(lambda: transport("fast")),
        "sampler": attempt(lambda: server_sampler.fetch_json(target(url + "/stats"), 1.0)[0]),
        "metrics_scraper": attempt(lambda: server_metrics.fetch_text(target(url + "/metrics"), 1.0)[0]),
        "comparison_request": attempt(lambda: comparison_target.request("GET", url + "/stats", timeout=1.0)),
        "target_kind": attempt(lambda: target_kind.send_once(url, RequestSpec("GET", "/doWork"))),
        "web_ui_faults": attempt(lambda: web_ui.forward_fault(url, "DELETE", None)[1]),
    }


def reached(remote: Server, before: int) -> int:
    time.sleep(0.3)
    return remote.requests - before


def locust_web(port: int, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    argv = [LOCUST, "--web-host", "127.0.0.1", "--web-port", str(port), "--launch-rate", "10", *args]
    return subprocess.Popen(
        argv, cwd=ROOT, env={**os.environ, **QUIET, **(env or {})},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def wait_up(url: str) -> None:
    deadline = time.monotonic() + 30
    while call(url) != 200:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not come up")
        time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> None:
    os.environ.update(QUIET)
    remote = Server(REMOTE, 80)
    local = Server("127.0.0.1")
    bouncer = Server("127.0.0.1", redirect=f"http://{REMOTE}/")
    results: dict[str, object] = {}

    # 1. two parsers, two answers
    tricky = f"http://{REMOTE}\\@{local.url.removeprefix('http://')}"
    before = remote.requests
    run = subprocess.run(
        [LOCUST, "--headless", "-u", "1", "-r", "1", "-t", "2s", "--launch-rate", "10", "--drain-s", "0",
         "-H", tricky, "--http-client", "requests", "HammerClient"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env={**os.environ, **QUIET},
    )  # fmt: skip
    results["1_headless_backslash_userinfo"] = {"rc": run.returncode, "reached": reached(remote, before)}
    before = remote.requests
    results["1_senders_backslash_userinfo"] = {"did": senders(tricky), "reached": reached(remote, before)}

    # 2. redirects and proxies
    before = remote.requests
    results["2_senders_redirected"] = {"did": senders(bouncer.url), "reached": reached(remote, before)}
    before = remote.requests
    os.environ.update({"HTTP_PROXY": f"http://{REMOTE}:80", "http_proxy": f"http://{REMOTE}:80"})
    results["2_senders_with_http_proxy"] = {
        "did": senders("http://127.0.0.1:9"),
        "reached": reached(remote, before),
    }
    os.environ.update(QUIET)

    # 3. the web UI skips the check: POST /user, then /swarm with an empty host; two classes, two hosts
    port = free_port()
    ui = f"http://127.0.0.1:{port}"
    proc = locust_web(port, "--class-picker", "HammerClient", env={})
    try:
        wait_up(ui + "/")
        request = urllib.request.Request(
            ui + "/user", data=json.dumps({"user_class_name": "HammerClient", "host": remote.url}).encode(),
            method="POST", headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with contextlib.suppress(OSError):
            urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=5).read()
        before = remote.requests
        status = call(
            ui + "/swarm",
            "POST",
            {"user_count": 1, "spawn_rate": 1, "host": "", "user_classes": "HammerClient"},
        )
        time.sleep(2.5)
        call(ui + "/stop")
        results["3_user_then_swarm_empty_host"] = {"swarm": status, "reached": reached(remote, before)}
    finally:
        stop(proc)
    port = free_port()
    ui = f"http://127.0.0.1:{port}"
    env = {"HAMMERLAB_TEST_HERE": local.url, "HAMMERLAB_TEST_THERE": remote.url}
    proc = locust_web(port, "-f", "tests/two_hosts_locustfile.py", env=env)
    try:
        wait_up(ui + "/")
        before = remote.requests
        status = call(ui + "/swarm", "POST", {"user_count": 2, "spawn_rate": 2, "host": ""})
        time.sleep(2.5)
        call(ui + "/stop")
        results["3_two_classes_two_hosts"] = {"swarm": status, "reached": reached(remote, before)}
    finally:
        stop(proc)

    # 4. the opt-in granted by someone who did not type it
    port = free_port()
    ui = f"http://127.0.0.1:{port}"
    proc = locust_web(port, "--host", local.url, "HammerClient")
    try:
        wait_up(ui + "/")
        evil = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
        results["4_foreign_host_index"] = call(ui + "/", headers={"Host": f"evil.example:{port}"})
        results["4_foreign_host_swarm"] = call(
            ui + "/swarm", "POST", {"user_count": 1, "spawn_rate": 1, "host": local.url}, evil
        )
        call(ui + "/stop")
        before = remote.requests
        first = call(
            ui + "/swarm",
            "POST",
            {"user_count": 1, "spawn_rate": 1, "host": local.url, "allow_remote": "true"},
        )
        time.sleep(1.0)
        call(ui + "/stop")
        time.sleep(1.5)
        second = call(ui + "/swarm", "POST", {"user_count": 1, "spawn_rate": 1, "host": remote.url})
        time.sleep(2.5)
        call(ui + "/stop")
        results["4_form_allow_remote"] = {"swarm": [first, second], "reached": reached(remote, before)}
    finally:
        stop(proc)
    with tempfile.TemporaryDirectory() as folder:
        run_dir = Path(folder) / "old-run"
        run_dir.mkdir()
        argv = ["--host", remote.url, "--allow-remote", "--capacity", "10", "--scenario", "healthy",
                "--duration", "5", "--drain-s", "0", "--clients", "HammerClient",
                "--results-dir", folder]  # fmt: skip
        (run_dir / "run.json").write_text(json.dumps({"reproduce": {"argv": argv}}))
        before = remote.requests
        run = subprocess.run(
            [sys.executable, "-m", "comparison", "--rerun", str(run_dir)],
            cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, **QUIET},
        )  # fmt: skip
        results["4_rerun_stored_allow_remote"] = {"rc": run.returncode, "reached": reached(remote, before)}
    results["reached_in_all"] = remote.requests
    print(json.dumps(results))


if __name__ == "__main__":
    main()
