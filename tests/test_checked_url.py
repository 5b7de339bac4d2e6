"""One loopback guard, parsed once, on every outbound path (issue 18, part 1).

- the grammar: what is refused (the two-parser tricks) and what passes;
- one predicate: every layer uses mitigations.checked_url's; the target server's own copy agrees with it;
- the property: generated URL strings, each accepted one sent through every real sender (both transports,
  the /stats sampler's and the metrics scraper's fetch, the comparison's helpers) with the socket layer's
  connect recording where it goes. Without the opt-in, every connect is to loopback.

Nothing here leaves the machine: the recorder refuses every connect after noting its address, and names
resolve from a fixed table (`remote.test` is 10.200.0.1), so no DNS is asked either.
"""

from __future__ import annotations

import ast
import contextlib
import ipaddress
import socket
from pathlib import Path

import gevent.socket
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import target_server.guard as target_guard
from comparison.target import TargetError
from comparison.target import request as comparison_request
from locust_plugin.server_metrics import fetch_text
from locust_plugin.server_sampler import fetch_json
from mitigations.checked_url import URLRefused, checked_url, is_loopback
from mitigations.core import Call
from mitigations.timeout import Timeouts
from mitigations.transport import FastTransport, RequestsTransport, TransportConfig

ROOT = Path(__file__).resolve().parent.parent
REMOTE = "10.200.0.1"


@pytest.fixture(autouse=True)
def _no_opt_in_from_the_environment(monkeypatch):
    monkeypatch.delenv("HAMMERLAB_ALLOW_REMOTE", raising=False)


# -- the grammar ---------------------------------------------------------------------------------------------

REFUSED = [
    "http://127.0.0.1//10.200.0.1/x",  # protocol-relative: geventhttpclient raised ValueError mid-send
    "http://10.200.0.1\\@127.0.0.1:3000",  # urlsplit: 127.0.0.1; urllib3: 10.200.0.1 (issue 18 item 1)
    "http://10.200.0.1@127.0.0.1:3000",
    "http://user:pw@127.0.0.1:3000",
    "http://127.0.0.1:3000\\@10.200.0.1",
    "http://2130706433:3000",  # 127.0.0.1 to inet_aton, a name to others
    "http://0177.0.0.1:3000",
    "http://0x7f.1:3000",
    "http://127.1:3000",
    "http://%31%32%37.0.0.1:3000",
    "http://127\u30020\u30020\u30021:3000",  # ideographic full stops: dots after IDNA
    "http://[::1%25lo]:3000",
    "http://[fe80::1%lo]:3000",
    "http://127.0.0.1 :3000",
    " http://127.0.0.1:3000",
    "http://127.0.0.1:3000\n",
    "http://127.0.0.1:0",
    "http://127.0.0.1:65536",
    "http://127.0.0.1:+80",
    "http://127.0.0.1:3000#@10.200.0.1",
    "http://10.200.0.1:3000",
    "http://[::ffff:10.200.0.1]:3000",
    "http://0.0.0.0:3000",
    "ftp://127.0.0.1",
    "//127.0.0.1:3000",
]


@pytest.mark.parametrize("url", REFUSED)
def test_tricks_and_remote_hosts_are_refused_with_one_line(url):
    with pytest.raises(URLRefused) as refused:
        checked_url(url)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("url", "address"),
    [("http://127.0.0.1:3000", "127.0.0.1"), ("http://[::1]:3000/base", "::1"),
     ("HTTP://LOCALHOST:3000", None), ("http://127.9.9.9", "127.9.9.9"),
     ("http://[::ffff:127.0.0.1]:80", "::ffff:7f00:1")],
)  # fmt: skip
def test_loopback_urls_pass_with_the_addresses_they_resolved_to(url, address):
    target = checked_url(url)
    assert target.loopback and target.addresses
    assert address is None or target.addresses == (address,)


def test_a_path_joined_onto_a_checked_url_cannot_change_its_host():
    base = checked_url("http://127.0.0.1:3000")
    for path in ("@10.200.0.1:8081/x", "//10.200.0.1/x", "/x\\@10.200.0.1", "/x y", "/#x"):
        with pytest.raises(URLRefused):
            base.join(path)
    assert base.join("/doWork?a=1").text == "http://127.0.0.1:3000/doWork?a=1"


def test_the_opt_in_allows_remote_addresses_but_not_the_tricks():
    assert not checked_url("http://10.200.0.1:3000", allow_remote=True).loopback
    with pytest.raises(URLRefused):
        checked_url("http://10.200.0.1\\@127.0.0.1:3000", allow_remote=True)


# -- one predicate -------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.ip_addresses(), st.ip_addresses(v=4).map(lambda a: f"::ffff:{a}")))
def test_the_target_servers_own_peer_rule_agrees_with_the_one_predicate(address):
    text = str(address)
    expected = ipaddress.ip_address(text)
    expected = getattr(expected, "ipv4_mapped", None) or expected
    assert is_loopback(text) is expected.is_loopback
    assert target_guard.is_loopback(text) is is_loopback(text)


def _calls_is_loopback_attribute(path: Path) -> bool:
    """A module that asks ipaddress itself whether something is loopback (`x.is_loopback`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(isinstance(node, ast.Attribute) and node.attr == "is_loopback" for node in ast.walk(tree))


def test_only_one_module_of_the_client_side_decides_what_loopback_is():
    owners = {"mitigations/checked_url.py", "target_server/guard.py"}  # the target is a separate program
    found = {
        str(path.relative_to(ROOT))
        for folder in ("mitigations", "locust_plugin", "comparison", "target_server", "locustfiles")
        for path in (ROOT / folder).rglob("*.py")
        if _calls_is_loopback_attribute(path)
    }
    assert found <= owners, f"a second loopback predicate: {sorted(found - owners)}"


# -- the property: where every accepted URL connects ---------------------------------------------------------

NAMES = {"localhost": ("127.0.0.1", "::1"), "remote.test": (REMOTE,), "localhost.remote.test": (REMOTE,)}
REBIND = "rebind.test"  # loopback on the first lookup of each example, 10.200.0.1 after (DNS rebinding)
HOSTS = [
    "127.0.0.1", "localhost", "LocalHost", REBIND, REMOTE, "remote.test", "localhost.remote.test",
    "2130706433", "180879361", "0177.0.0.1", "0x7f.1", "0x7f.0.0.1", "127.1", "012.200.0.1", "0xa.200.0.1",
    "[::1]", "[::ffff:127.0.0.1]", "[::ffff:10.200.0.1]", "[::ffff:a00:1]", "[fe80::1%25lo]", "[::1%lo]",
    "localhost.", "127.0.0.1.", "%31%32%37.0.0.1", "127\u30020\u30020\u30021", "\uff4c\uff4f\uff43alhost",
    "::1", "[10.200.0.1]", "[::1]]", "127.0.0.1\\", "0", "0.0.0.0", "[::]",
]  # fmt: skip
USERINFO = ["", "u@", f"{REMOTE}@", f"{REMOTE}\\@", "u:p@", "remote.test@", "@", "127.0.0.1@"]
PORTS = ["", ":3000", ":80", ":0", ":65536", ":+80", ": 80", ":\uff13\uff10", ":1e3", ":", ":3000:80"]
PATHS = [
    "",
    "/",
    "/x",
    f"\\@{REMOTE}/",
    f"@{REMOTE}/x",
    f"/#@{REMOTE}",
    f"?@{REMOTE}",
    "/%2F%2Fx",
    f"//{REMOTE}/x",
]
NOISE = [" ", "\t", "\n", "\r", "\\", "%", "@", "\u3002", "\x00", "#", "/", ":", "[", "]", "."]
SCHEMES = ["http://", "https://", "HTTP://", "http:/", "http:\\\\", "http:///", "ftp://", ""]
CALL_PATHS = ["/doWork", f"@{REMOTE}:8081/x", f"//{REMOTE}/x", f"\\@{REMOTE}/x", "/x?y=@z"]


@st.composite
def url_texts(draw) -> str:
    """Half near-valid (a good scheme, port and path, any host), half anything the pieces make."""
    if draw(st.booleans()):
        pieces = (SCHEMES[:3], USERINFO[:1], HOSTS, PORTS[:3], PATHS[:3])
    else:
        pieces = (SCHEMES, USERINFO, HOSTS, PORTS, PATHS)
    text = "".join(draw(st.sampled_from(options)) for options in pieces)
    if draw(st.integers(0, 3)) == 0:
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(NOISE)) + text[at:]
    return text


class Recorder:
    """Every address a socket was asked to connect to; the connect itself is refused, so none happens."""

    def __init__(self) -> None:
        self.addresses: list[str] = []
        self.lookups = 0  # of REBIND, in this example

    def connect(self, address: tuple) -> None:
        self.addresses.append(str(address[0]))
        raise ConnectionRefusedError(111, "recorded, not connected")


def _table_getaddrinfo(real, recorder: Recorder):
    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        name = host.decode() if isinstance(host, bytes) else str(host)
        try:
            ipaddress.ip_address(name.split("%", 1)[0])
        except ValueError:
            if name.lower() == REBIND:
                recorder.lookups += 1
            addresses = {REBIND: ("127.0.0.1",) if recorder.lookups <= 1 else (REMOTE,), **NAMES}.get(
                name.lower().rstrip(".")
            )
            if addresses is None:
                raise socket.gaierror(socket.EAI_NONAME, "not in the test's table") from None
            return [
                info for a in addresses for info in real(a, port, family, type, proto, socket.AI_NUMERICHOST)
            ]
        return real(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)

    return getaddrinfo


@pytest.fixture
def recorder(monkeypatch) -> Recorder:
    recorder = Recorder()
    for cls in {socket.socket, gevent.socket.socket}:
        monkeypatch.setattr(cls, "connect", lambda _sock, address, *_: recorder.connect(address))
        monkeypatch.setattr(cls, "connect_ex", lambda _sock, address, *_: recorder.connect(address))
    real = socket.getaddrinfo
    for module in {socket, gevent.socket}:
        monkeypatch.setattr(module, "getaddrinfo", _table_getaddrinfo(real, recorder))
    monkeypatch.setenv("HTTP_PROXY", f"http://{REMOTE}:80")  # ignored by every sender
    monkeypatch.setenv("http_proxy", f"http://{REMOTE}:80")
    return recorder


def _send_everywhere(text: str, path: str, recorder: Recorder) -> None:
    """`text` through every real sender, as each would use it. Each sender's own check is the first
    lookup of a rebinding name; a sender that resolved again would be sent to 10.200.0.1."""
    call = Call(method="GET", path=path, launched_at=0.0)
    for transport_class in (RequestsTransport, FastTransport):
        recorder.lookups = 0
        config = TransportConfig(text, timeouts=Timeouts(connect=0.5, read=0.5))
        if transport_class is FastTransport and config.target.scheme != "http":
            continue
        transport = transport_class(config)
        try:
            transport.send(call)
        finally:
            transport.close()
    for fetch in (fetch_json, fetch_text):
        recorder.lookups = 0
        with contextlib.suppress(OSError):
            fetch(checked_url(text).join("/stats"), 0.5)
    recorder.lookups = 0
    with contextlib.suppress(TargetError):
        comparison_request("GET", text, timeout=0.5)


TRIED = {"urls": 0, "accepted": 0, "connects": 0}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=url_texts(), path=st.sampled_from(CALL_PATHS))
@example(text="http://127.0.0.1//10.200.0.1/x", path="/doWork")  # found by this property: see REFUSED
def test_without_the_opt_in_every_accepted_url_connects_only_to_loopback(recorder, text, path):
    TRIED["urls"] += 1
    recorder.addresses.clear()
    recorder.lookups = 0
    try:
        target = checked_url(text)
    except URLRefused:
        return
    TRIED["accepted"] += 1
    assert target.loopback, text
    _send_everywhere(text, path, recorder)
    TRIED["connects"] += len(recorder.addresses)
    off = [a for a in recorder.addresses if not is_loopback(a)]
    assert not off, f"{text!r} with path {path!r} connected to {off}"


def test_the_property_tried_enough_urls_and_connected():
    """Runs after the property (file order): it must have accepted and sent some, not refused them all."""
    print(f"\nURL property: {TRIED['urls']} URLs tried, {TRIED['accepted']} accepted, {TRIED['connects']} "
          "connects recorded, all to loopback")  # fmt: skip
    if TRIED["urls"]:
        assert TRIED["accepted"] > 0 and TRIED["connects"] > 0


# -- the opt-in is never granted by a run folder ---------------------------------------------------------


def test_rerun_drops_a_stored_allow_remote_unless_typed_again(tmp_path):
    import json

    from comparison.rerun import rerun_argv

    run = tmp_path / "run"
    run.mkdir()
    stored = ["--host", "http://10.200.0.1:80", "--allow-remote", "--clients", "HammerClient"]
    stored += ["--", "--allow-r"]
    (run / "run.json").write_text(json.dumps({"reproduce": {"argv": stored}}))
    assert not any(token.startswith("--allow") for token in rerun_argv(run))
    assert rerun_argv(run, allow_remote=True).count("--allow-remote") == 1
