"""FastTransport builds a body-less request once per method, path and headers, and never mixes them up."""

from __future__ import annotations

from mitigations.core import Call
from mitigations.timeout import Timeouts
from mitigations.transport import REQUEST_CACHE_SIZE, FastTransport, TransportConfig


def transport() -> FastTransport:
    return FastTransport(TransportConfig(base_url="http://127.0.0.1:9/base", timeouts=Timeouts(connect=1.0)))


def test_the_same_request_is_built_once_and_different_ones_stay_apart():
    fast = transport()
    ping = fast._request_bytes(Call("GET", "/ping", launched_at=0.0))
    assert ping.startswith(b"GET /base/ping HTTP/1.1\r\n")
    assert fast._request_bytes(Call("GET", "/ping", launched_at=1.0)) is ping  # built once
    other = fast._request_bytes(Call("GET", "/doWork", launched_at=0.0))
    assert other.startswith(b"GET /base/doWork ") and other is not ping
    tagged = fast._request_bytes(Call("GET", "/ping", launched_at=0.0, headers={"X-Tag": "a"}))
    retagged = fast._request_bytes(Call("GET", "/ping", launched_at=0.0, headers={"X-Tag": "b"}))
    assert b"X-Tag: a\r\n" in tagged and b"X-Tag: b\r\n" in retagged and b"X-Tag" not in ping
    head = fast._request_bytes(Call("HEAD", "/ping", launched_at=0.0))
    assert head.startswith(b"HEAD /base/ping ")


def test_a_body_is_never_cached_and_the_cache_stays_bounded():
    fast = transport()
    one = fast._request_bytes(Call("POST", "/x", launched_at=0.0, body=b"one"))
    three = fast._request_bytes(Call("POST", "/x", launched_at=0.0, body=b"three"))
    assert b"Content-Length: 3\r\n" in one and b"Content-Length: 5\r\n" in three
    assert not fast._requests
    for n in range(REQUEST_CACHE_SIZE * 2):
        fast._request_bytes(Call("GET", f"/p{n}", launched_at=0.0))
    assert len(fast._requests) <= REQUEST_CACHE_SIZE
