"""Issue 18, item 5 (the guard's half): a deferred row replayed from disk passes the same request checks
as a fresh call, and goes to the same checked URL. A planted path `@10.200.0.1:8081/x` is never sent.

The queue file and its writer thread are real (as in tests/test_defer.py); the transport holds calls."""

from __future__ import annotations

import sqlite3

import gevent
import pytest

from mitigations import FakeClock
from mitigations.checked_url import checked_url
from tests.test_defer import deferring, occupy, send, wait_until

PLANTED = "@10.200.0.1:8081/x"


@pytest.mark.slow
def test_a_planted_row_is_checked_like_a_fresh_call_and_never_reaches_the_transport(tmp_path):
    clock = FakeClock()
    pipeline, defer, held, _ = deferring(tmp_path, clock, client="Planted")
    first = occupy(pipeline, held)
    send(pipeline, "/kept")  # deferred to disk
    first.kill()
    defer.close()
    with sqlite3.connect(defer.store_path) as db:
        db.execute("UPDATE deferred SET path = ?", (PLANTED,))

    clock2 = FakeClock(start=50.0)
    pipeline2, defer2, held2, _ = deferring(tmp_path, clock2, client="Planted")
    fresh = occupy(pipeline2, held2, "/new")  # opens the queue: the planted row is a leftover
    held2.release()
    fresh.join(timeout=5)
    clock2.advance(1.0)
    defer2.drain_once()
    gevent.sleep(0.2)
    wait_until(lambda: defer2.depth == 0 or held2.inside > 0, 2.0)
    assert PLANTED not in held2.order, held2.order  # refused before the wire, as a fresh call would be
    assert held2.order == ["/new"]
    defer2.close()


def test_the_transport_never_turns_a_path_into_a_host():
    base = checked_url("http://127.0.0.1:3000")
    assert base.join("/x").host == "127.0.0.1"
    for path in (PLANTED, "//10.200.0.1/x"):
        try:
            base.join(path)
        except ValueError:
            continue
        raise AssertionError(f"{path!r} was joined")
