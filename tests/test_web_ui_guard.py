"""Who may use Locust's web UI with Hammerlab (issue 10, findings 1-3): the /hammerlab routes answer
loopback clients on a loopback Host only, never a cross-site request; locust.conf keeps the UI on
127.0.0.1; a start from the web form is checked against the options' ranges.

The non-loopback peer is real: tests/netns_web_ui.py runs in a private network namespace where
10.200.0.1 is a second address on `lo` (FIELD-NOTES §6), so nothing can leave the machine.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from locust_plugin.web_guard import csrf_problem, is_loopback_address, is_loopback_host, refusal
from tests.conftest import TargetServer
from tests.locust_run import LOCUST, ROOT

NETNS = ["unshare", "-n", "sh", "-c", 'ip link set lo up && ip addr add 10.200.0.1/32 dev lo && exec "$@"']
NETNS.append("_")
OUTAGE = {"kind": "outage", "duration_s": 5}


# -- the rule, on its own -----------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.ip_addresses(v=4))
def test_an_ipv4_peer_is_loopback_exactly_when_it_is_in_127_8_mapped_or_not(address):
    expected = address in ipaddress.ip_network("127.0.0.0/8")
    assert is_loopback_address(str(address)) is expected
    assert is_loopback_address(f"::ffff:{address}") is expected


@pytest.mark.parametrize("peer", ["::1", "127.0.0.1", "127.9.9.9", "::ffff:127.0.0.1", "[::1]"])
def test_loopback_peers(peer):
    assert is_loopback_address(peer)


@pytest.mark.parametrize("peer", ["", None, "10.200.0.1", "::ffff:10.0.0.1", "::", "0.0.0.0", "localhost"])
def test_other_peers(peer):
    assert not is_loopback_address(peer)


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:8089", "127.0.0.1", "127.0.0.1:8089", "[::1]:80"])
def test_loopback_host_headers(host):
    assert is_loopback_host(host)


@pytest.mark.parametrize(
    "host",
    [None, "", "evil.example", "evil.example:8089", "127.0.0.1.nip.io", "localhost.evil.example",
     "10.200.0.1:8089", "127.0.0.1:99999", "user@127.0.0.1", "127.0.0.1/x", "[::ffff:10.0.0.1]"],
)  # fmt: skip
def test_other_host_headers(host):
    assert not is_loopback_host(host)


def test_proxy_headers_are_not_believed():
    headers = {"Host": "127.0.0.1:8089", "X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1"}
    assert refusal("GET", "10.200.0.1", headers) is not None


def test_same_origin_browser_posts_pass_and_foreign_ones_do_not():
    own = {"Host": "127.0.0.1:8089", "Origin": "http://127.0.0.1:8089", "Content-Type": "application/json"}
    assert refusal("POST", "127.0.0.1", own) is None
    assert csrf_problem("POST", own) is None
    for origin in ("http://evil.example", "null", "http://127.0.0.1:3000", "file://"):
        assert refusal("POST", "127.0.0.1", {**own, "Origin": origin}) is not None
        assert csrf_problem("POST", {**own, "Origin": origin}) is not None
    assert csrf_problem("GET", {**own, "Origin": "http://evil.example"}) is None  # reading is not changing


# -- a real Locust web UI on loopback ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def call(
    url: str, method: str = "GET", data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            status, body = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    except OSError:
        return 0, {}
    try:
        return status, json.loads(body)
    except ValueError:
        return status, {}


@pytest.fixture(scope="module")
def web(tmp_path_factory) -> Iterator[tuple[str, TargetServer]]:
    from tests.conftest import launch_target

    target = launch_target()
    port = free_port()
    log = tmp_path_factory.mktemp("web") / "locust.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [LOCUST, "--web-port", str(port), "--host", target.url, "--launch-rate", "2", "HammerClient"],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while call(url + "/hammerlab/live")[0] != 200:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        yield url, target
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        target.stop()


def fault_kinds(target: TargetServer) -> list[str]:
    return [fault["kind"] for fault in target.stats()["faults"]]


JSON = {"Content-Type": "application/json"}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({**JSON, "Origin": "http://evil.example"}, 403),
        ({**JSON, "Host": "evil.example"}, 403),  # DNS rebinding: the page's name, our address
        ({**JSON, "Sec-Fetch-Site": "cross-site"}, 403),
        ({"Content-Type": "text/plain"}, 415),  # what a cross-site form or no-cors fetch can send
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
    ],
)
def test_cross_site_fault_requests_are_refused_and_change_nothing(web, headers, status):
    url, target = web
    got, body = call(url + "/hammerlab/faults", "POST", json.dumps(OUTAGE).encode(), headers)
    assert (got, fault_kinds(target)) == (status, [])
    assert "\n" not in body["error"]


@pytest.mark.slow
def test_the_ui_itself_may_still_inject_a_fault(web):
    url, target = web
    target.admin("DELETE", "/faults")
    own = {**JSON, "Origin": url, "Sec-Fetch-Site": "same-origin"}
    assert call(url + "/hammerlab/faults", "POST", json.dumps(OUTAGE).encode(), own)[0] == 201
    assert fault_kinds(target) == ["outage"]
    assert call(url + "/hammerlab/faults", "DELETE", headers={"Origin": url})[0] == 200
    assert fault_kinds(target) == []


@pytest.mark.slow
def test_reading_routes_refuse_a_foreign_host(web):
    url, _ = web
    for route in (
        "/hammerlab/live",
        "/hammerlab/server.csv",
        "/hammerlab/mitigations.csv",
        "/hammerlab/mitigations.json",
    ):
        assert call(url + route, headers={"Host": "evil.example:8089"})[0] == 403
        assert call(url + route)[0] == 200


def swarm(url: str, headers: dict[str, str] | None = None, **fields: str) -> tuple[int, dict]:
    form = {"user_count": "1", "spawn_rate": "1", **fields}
    data = urllib.parse.urlencode(form).encode()
    form_type = {"Content-Type": "application/x-www-form-urlencoded"}
    return call(url + "/swarm", "POST", data, {**form_type, **(headers or {})})


@pytest.mark.slow
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("launch_rate", "1000000", "--launch-rate: '1000000' must be from 0.01 to 100,000 requests/s"),
        ("launch_rate", "inf", "--launch-rate: 'inf' is not a number"),
        ("max_concurrent", "1_6", "--max-concurrent: '1_6' is not a whole number"),  # int() takes it
        ("connect_timeout_ms", "abc", "--connect-timeout-ms: 'abc' is not a whole number"),  # a 500 in Locust
        ("path", "@evil.example/x", "--path: '@evil.example/x' must start with /"),
        ("server_sample_ms", "\uff15\uff10", "--server-sample-ms must be a whole number"),  # full-width 50
    ],
)
def test_the_web_form_is_checked_before_locust_stores_it(web, field, value, message):
    url, _ = web
    status, body = swarm(url, **{field: value})
    assert status == 400 and body["success"] is False
    assert body["message"].startswith(message) and "\n" not in body["message"]
    assert call(url + "/stats/requests")[1]["state"] in ("ready", "stopped")


@pytest.mark.slow
def test_a_cross_site_swarm_is_refused_and_a_good_one_runs(web):
    url, target = web
    status, _ = swarm(url, {"Origin": "http://evil.example"})
    assert status == 403
    assert call(url + "/stats/requests")[1]["state"] in ("ready", "stopped")
    status, body = swarm(url, {"Origin": url}, launch_rate="5", host=target.url)
    assert (status, body["success"]) == (200, True)
    try:
        deadline = time.monotonic() + 10
        while target.stats()["requests_total"] < 3:
            assert time.monotonic() < deadline, "the good start sent nothing"
            time.sleep(0.2)
    finally:
        assert call(url + "/stop", "POST", b"")[0] == 200


# -- from another address, for real, in a private network namespace -------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_only_loopback_peers_reach_the_hammerlab_routes_and_the_ui_stays_on_loopback():
    result = subprocess.run(
        [*NETNS, sys.executable, str(Path(__file__).with_name("netns_web_ui.py"))],
        cwd=ROOT, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got == {
        # a peer at 10.200.0.1 on a UI that listens everywhere: refused, and the target untouched
        "remote_fault": 403,
        "faults_after_remote": [],
        "remote_live": 403,
        "remote_csv": 403,
        "remote_delete": 403,
        # 127.0.0.1 on a dual-stack socket arrives as ::ffff:127.0.0.1 and is loopback
        "mapped_loopback_live": 200,
        "mapped_loopback_fault": 201,
        "faults_after_local": ["outage"],
        # locust.conf: the UI listens on 127.0.0.1 only
        "conf_on_other_address": "ConnectionRefusedError",
        "conf_on_loopback": 200,
    }
