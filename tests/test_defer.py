"""Defer: limiter-shed calls are kept in SQLite and replayed; too old they expire unsent; the queue is
bounded; a new process replays what an old one left; defer is outermost in a built pipeline.

Fake time (FakeClock) drives ages and pauses; the SQLite file and its writer thread are real.
"""

from __future__ import annotations

import argparse
import logging
import sqlite3

import gevent
import pytest

from locust_plugin import options
from locust_plugin.pipelines import build_pipeline
from mitigations import FakeClock, Pipeline, PipelineEvents, Throttle, ThrottleConfig
from mitigations.breaker import CircuitBreaker, CircuitBreakerConfig
from mitigations.core import Call, Outcome, ServiceUnavailable
from mitigations.defer import Defer
from mitigations.defer_config import DeferConfig
from tests.policy_kit import HeldCalls


class HeldTransport:
    """Calls stay on the wire until the test releases them (`HeldCalls` as a `Transport`)."""

    def __init__(self, clock: FakeClock) -> None:
        self.held = HeldCalls(clock)

    def send(self, call: Call) -> Outcome:
        return self.held(call)


class Heard:
    """Every outcome the pipeline announced, as (event, kind-or-cause, path)."""

    def __init__(self, events: PipelineEvents) -> None:
        self.items: list[tuple[str, str, str]] = []
        self.outcomes: list[tuple[str, Outcome]] = []
        for name in ("wire", "shed", "replayed", "expired"):
            events.on(name, lambda outcome, name=name: self._add(name, outcome))

    def _add(self, name: str, outcome: Outcome) -> None:
        self.items.append((name, outcome.kind, outcome.call.path))
        self.outcomes.append((name, outcome))

    def of(self, name: str) -> list[tuple[str, str]]:
        return [(kind, path) for event, kind, path in self.items if event == name]


def deferring(tmp_path, clock, *, limit=1, priority="fresh", max_age=60.0, max_queue=100, client="T"):
    throttle = Throttle(ThrottleConfig(max_concurrent=limit))
    config = DeferConfig(tmp_path, max_age=max_age, max_queue=max_queue, priority=priority, drain_every=None)
    defer = Defer(config, throttle, client=client)
    transport = HeldTransport(clock)
    pipeline = Pipeline([defer, throttle], transport, clock=clock)
    return pipeline, defer, transport.held, Heard(pipeline.events)


def occupy(pipeline, held, path="/a"):
    """Start a call that holds a throttle slot on the wire; wait (real time) until it is there."""
    before = held.inside
    greenlet = gevent.spawn(pipeline.execute, Call("GET", path, launched_at=pipeline.clock.now()))
    with gevent.Timeout(5):
        while held.inside == before:
            gevent.sleep(0.005)
    return greenlet


def send(pipeline, path, **kw):
    return pipeline.execute(Call(kw.pop("method", "GET"), path, launched_at=pipeline.clock.now(), **kw))


def wait_until(predicate, seconds=5.0):
    with gevent.Timeout(seconds):
        while not predicate():
            gevent.sleep(0.005)


def rows_on_disk(defer) -> int:
    with sqlite3.connect(defer.store_path) as db:
        return db.execute("SELECT COUNT(*) FROM deferred").fetchone()[0]


def test_a_call_older_than_max_age_is_expired_never_sent_and_counted(tmp_path):
    clock = FakeClock()
    pipeline, defer, held, heard = deferring(tmp_path, clock, max_age=60.0)
    first = occupy(pipeline, held)
    old = send(pipeline, "/b")
    clock.advance(30)
    young = send(pipeline, "/c")
    assert old.kind == young.kind == "shed:deferred"
    assert heard.of("shed") == [("shed:deferred", "/b"), ("shed:deferred", "/c")]  # never `throttle`
    assert defer.depth == 2 and rows_on_disk(defer) == 2

    clock.advance(30.5)  # /b is 60.5 s old, /c 30.5 s
    defer.drain_once()
    assert defer.expired == 1 and heard.of("expired") == [("shed:defer-expired", "/b")]
    assert defer.depth == 1

    held.release()  # /a answers; the slot is free, /c may be replayed
    first.join(timeout=5)
    assert defer.drain_once() == 1
    wait_until(lambda: held.inside == 1)
    held.release()
    wait_until(lambda: defer.replayed == 1)
    assert held.order == ["/a", "/c"]  # /b never reached the wire
    ((_, replayed),) = [item for item in heard.outcomes if item[0] == "replayed"]
    assert replayed.ok and replayed.call.path == "/c"
    assert replayed.latency == pytest.approx(30.5, abs=1e-6)  # from the original launch
    assert defer.replay_delays.get_total_count() == 1
    defer.close()
    assert rows_on_disk(defer) == 0


def test_a_replay_keeps_its_exact_launch_so_an_answer_at_the_slo_is_within_it(tmp_path):
    """The row's wall-clock epoch (~1.7e9 s) holds only ~0.2 µs: a launch taken back through it moved
    1000.35 to 1000.3499999, and an answer exactly 300 ms later missed a 300 ms SLO."""
    clock = FakeClock()
    throttle = Throttle(ThrottleConfig(max_concurrent=1))
    config = DeferConfig(tmp_path, drain_every=None)
    defer = Defer(config, throttle, client="T", wall=lambda: 1_733_450_000.0)
    transport = HeldTransport(clock)
    pipeline = Pipeline([defer, throttle], transport, clock=clock)
    heard = Heard(pipeline.events)
    first = occupy(pipeline, transport.held)
    clock.advance(0.35)
    launched = clock.now()
    assert send(pipeline, "/b").kind == "shed:deferred"
    transport.held.release()
    first.join(timeout=5)
    clock.advance(0.3)
    assert defer.drain_once() == 1
    wait_until(lambda: transport.held.inside == 1)
    transport.held.release()
    wait_until(lambda: defer.replayed == 1)
    ((_, replayed),) = [item for item in heard.outcomes if item[0] == "replayed"]
    assert replayed.call.launched_at == launched
    assert replayed.latency * 1000.0 <= 300.0
    defer.close()


def test_a_full_queue_sheds_with_its_own_cause_and_the_limiter_shed_is_announced_once(tmp_path):
    clock = FakeClock()
    pipeline, defer, held, heard = deferring(tmp_path, clock, max_queue=2)
    first = occupy(pipeline, held)
    outcomes = [send(pipeline, f"/{n}") for n in range(4)]
    assert [o.kind for o in outcomes] == ["shed:deferred"] * 2 + ["shed:defer-full"] * 2
    assert heard.of("shed") == [
        ("shed:deferred", "/0"),
        ("shed:deferred", "/1"),
        ("shed:defer-full", "/2"),
        ("shed:defer-full", "/3"),
    ]
    assert (defer.deferred, defer.full, defer.depth, rows_on_disk(defer)) == (2, 2, 2, 2)
    held.release()
    first.join(timeout=5)
    defer.close()


def test_a_new_process_replays_the_leftovers_first_oldest_first_and_says_how_many(tmp_path, caplog):
    clock = FakeClock()
    pipeline, defer, held, _ = deferring(tmp_path, clock, client="Crashy")
    first = occupy(pipeline, held)
    for path in ("/old1", "/old2", "/old3"):
        send(pipeline, path)
    first.kill()  # the run ends with three calls queued
    defer.close()

    clock2 = FakeClock(start=50.0)  # another process: another monotonic origin
    pipeline2, defer2, held2, heard2 = deferring(tmp_path, clock2, client="Crashy")
    with caplog.at_level(logging.INFO, logger="hammerlab"):
        fresh = occupy(pipeline2, held2, "/new")  # the first call opens the queue
    assert "Crashy: found 3 deferred calls left by an earlier run" in caplog.text
    assert defer2.leftovers == 3
    assert send(pipeline2, "/new2").kind == "shed:deferred"
    held2.release()
    fresh.join(timeout=5)
    for done in range(1, 5):
        clock2.advance(1.0)  # past the pause that follows a deferral
        assert defer2.drain_once() == 1  # one slot: one replay at a time
        wait_until(lambda: held2.inside == 1)
        held2.release()
        wait_until(lambda done=done: defer2.replayed == done)
    assert held2.order == ["/new", "/old1", "/old2", "/old3", "/new2"]
    assert [path for _, path in heard2.of("replayed")] == ["/old1", "/old2", "/old3", "/new2"]
    assert defer2.depth == 0
    defer2.close()
    assert rows_on_disk(defer2) == 0


def test_fresh_priority_leaves_a_quarter_of_the_slots_and_waits_while_fresh_calls_are_deferred(tmp_path):
    clock = FakeClock()
    pipeline, defer, held, _ = deferring(tmp_path, clock, limit=8)
    greenlets = [occupy(pipeline, held, f"/f{n}") for n in range(8)]
    for n in range(10):
        send(pipeline, f"/d{n}")
    held.release(8)
    gevent.joinall(greenlets, timeout=5)
    assert defer.free_slots() == 6  # 8 slots less a reserve of 2 for fresh calls
    assert defer.drain_once() == 0  # a fresh call was deferred just now: fresh calls go first
    clock.advance(0.2)
    assert defer.drain_once() == 6
    wait_until(lambda: held.inside == 6)
    assert held.order[8:] == [f"/d{n}" for n in range(6)]  # oldest first
    held.release(6)
    wait_until(lambda: not defer._replaying)
    defer.close()


def test_deferred_priority_takes_every_free_slot(tmp_path):
    clock = FakeClock()
    pipeline, defer, held, _ = deferring(tmp_path, clock, limit=4, priority="deferred")
    greenlets = [occupy(pipeline, held, f"/f{n}") for n in range(4)]
    for n in range(6):
        send(pipeline, f"/d{n}")
    held.release(4)
    gevent.joinall(greenlets, timeout=5)
    assert defer.drain_once() == 4  # no reserve, no pause
    wait_until(lambda: held.inside == 4)
    held.release(4)
    wait_until(lambda: not defer._replaying)
    defer.close()


def test_a_replay_passes_the_breaker_again_and_waits_while_it_is_open(tmp_path):
    """Composition: defer outside a breaker. An open breaker's shed is kept (not announced as
    circuit-open), the replay is refused again while it stays open, and goes out once it closes."""
    clock = FakeClock()
    breaker = CircuitBreaker(CircuitBreakerConfig(mode="recent-error", recent_error_delay=2.0))
    throttle = Throttle(ThrottleConfig(max_concurrent=4))
    defer = Defer(DeferConfig(tmp_path, drain_every=None), throttle, client="B")
    transport = HeldTransport(clock)
    pipeline = Pipeline([defer, breaker, throttle], transport, clock=clock)
    heard = Heard(pipeline.events)
    failing = occupy(pipeline, transport.held, "/fails")
    transport.held.release(error=ServiceUnavailable())
    failing.join(timeout=5)
    assert send(pipeline, "/kept").kind == "shed:deferred"  # the breaker is open for 2 s
    clock.advance(1.0)
    assert defer.drain_once() == 1
    wait_until(lambda: defer.requeued == 1)  # refused by the open breaker: back in line
    assert transport.held.order == ["/fails"] and defer.depth == 1
    clock.advance(1.5)  # the breaker's pause is over
    assert defer.drain_once() == 1
    wait_until(lambda: transport.held.inside == 1)
    transport.held.release()
    wait_until(lambda: defer.replayed == 1)
    assert transport.held.order == ["/fails", "/kept"]
    assert heard.of("shed") == [("shed:deferred", "/kept")]  # no circuit-open row for a kept call
    defer.close()


def parsed(**values) -> argparse.Namespace:
    return argparse.Namespace(**{option.dest: values.get(option.dest) for option in options.OPTIONS})


def test_defer_is_the_outermost_layer_and_needs_something_to_defer_from(tmp_path):
    read = parsed(defer_dir=str(tmp_path))
    names = ("timeout", "throttle", "retry", "breaker", "defer")
    built = build_pipeline(names, read, "http://127.0.0.1:9", FakeClock())
    assert list(built.policies) == ["defer", "retry", "breaker", "throttle"]
    assert built.pipeline.policies[0] is built.policies["defer"]
    assert built.policies["defer"].limiter is built.policies["throttle"]
    with pytest.raises(ValueError, match="defer keeps what a limiter or breaker sheds") as caught:
        build_pipeline(("defer", "timeout"), read, "http://127.0.0.1:9", FakeClock())
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"max_age": 0}, "max_age"),
        ({"max_queue": 0}, "max_queue"),
        ({"priority": "newest"}, "priority"),
        ({"drain_every": -1}, "drain_every"),
    ],
)
def test_bad_config_fails_at_construction_with_one_line_naming_the_value(tmp_path, kwargs, word):
    with pytest.raises(ValueError, match=word):
        DeferConfig(tmp_path, **kwargs)
