"""Defer at its seams, in-process, with a real SQLite file (issue 18, items 5, 10 and 22):

- every unusable queue folder or file is refused before a run, with one line naming the path;
- the default folder is this user's alone (0700) and the target's own, and one owned by someone else
  or open to others is refused;
- rows read from disk meet the request checks of a fresh call: a bad row is set aside and counted,
  never sent, and never crashes the replay;
- a replay cut short leaves its row `sending`; the next run sends it again only when that is safe
  (an idempotent method or an Idempotency-Key), and otherwise sets it aside and counts it;
- while a stopping test drains, a replay starts only if its deadline falls before the drain's end.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import stat
import tempfile

import gevent
import pytest

from locust_plugin import options
from locust_plugin.pipelines import build_pipeline
from mitigations import FakeClock, Pipeline, Throttle, ThrottleConfig
from mitigations.breaker import CircuitBreaker, CircuitBreakerConfig
from mitigations.core import Call, Outcome, ServiceUnavailable
from mitigations.defer import Defer
from mitigations.defer_checks import QueueProblem, default_directory, user_base
from mitigations.defer_config import DeferConfig
from mitigations.defer_rows import BAD, IN_DOUBT, SENDING
from mitigations.hedge import Hedge, HedgeConfig
from mitigations.retry import Retry, RetryConfig
from tests.policy_kit import HeldCalls
from tests.test_defer import Heard, HeldTransport, occupy, send, wait_until


def queue(tmp_path, clock, *, client="T", limit=1, private=False, directory=None):
    throttle = Throttle(ThrottleConfig(max_concurrent=limit))
    config = DeferConfig(directory or tmp_path, drain_every=None, priority="deferred", private=private)
    defer = Defer(config, throttle, client=client)
    transport = HeldTransport(clock)
    return Pipeline([defer, throttle], transport, clock=clock), defer, transport.held


def refused(defer: Defer, client: str = "T") -> str:
    with pytest.raises(QueueProblem) as caught:
        defer.check(client)
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def a_defer(directory) -> Defer:
    return Defer(DeferConfig(directory, drain_every=None), Throttle(ThrottleConfig(max_concurrent=1)))


# -- item 22: unusable folders and files are refused before the run ----------------------------------------


def test_every_unusable_folder_or_file_is_refused_with_one_line_naming_it(tmp_path):
    def folder(name):
        path = tmp_path / name
        path.mkdir()
        return path

    not_db = folder("not-db")
    (not_db / "T.sqlite").write_text("this is not a database\n" * 200)
    corrupt = folder("corrupt")
    with sqlite3.connect(corrupt / "T.sqlite") as db:
        db.execute("CREATE TABLE filler (x TEXT)")
        db.executemany("INSERT INTO filler VALUES (?)", [("x" * 500,)] * 200)
    data = bytearray((corrupt / "T.sqlite").read_bytes())
    data[4096 * 2 : 4096 * 2 + 64] = b"\xff" * 64  # scribble over an interior page
    (corrupt / "T.sqlite").write_bytes(bytes(data))
    schema = folder("schema")
    with sqlite3.connect(schema / "T.sqlite") as db:
        db.execute("CREATE TABLE deferred (something_else TEXT)")
    a_dir = folder("a-dir")
    (a_dir / "T.sqlite").mkdir()
    fifo = folder("fifo")
    os.mkfifo(fifo / "T.sqlite")
    fifo_lock = folder("fifo-lock")
    os.mkfifo(fifo_lock / "T.sqlite.lock")
    file_loop = folder("file-loop")
    (file_loop / "T.sqlite").symlink_to(file_loop / "T.sqlite")
    (tmp_path / "dir-loop").symlink_to(tmp_path / "dir-loop")
    null_file = folder("null-file")
    (null_file / "T.sqlite").symlink_to("/dev/null")
    cases = {
        not_db / "T.sqlite": "not a usable SQLite database",
        corrupt / "T.sqlite": "SQLite database",
        schema / "T.sqlite": "with other columns (something_else)",
        a_dir / "T.sqlite": "is a folder, not a queue file",
        fifo / "T.sqlite": "is a FIFO, not a queue file",
        fifo_lock / "T.sqlite.lock": "is a FIFO, not a queue file",
        file_loop / "T.sqlite": "is a symlink loop",
        tmp_path / "dir-loop": "is a symlink loop",
        null_file / "T.sqlite": "is a device, not a queue file",
    }
    for path, problem in cases.items():
        directory = path if path.name == "dir-loop" else path.parent
        message = refused(a_defer(directory))
        assert str(path) in message and problem in message, (path, message)
    message = refused(a_defer("/dev/null"))
    assert message == "--defer-dir /dev/null is a device, not a folder"
    (tmp_path / "a-file").write_text("")
    a_file = tmp_path / "a-file"
    assert refused(a_defer(a_file)) == f"--defer-dir {a_file} is a file, not a folder"


def test_a_queue_that_cannot_open_at_run_time_sheds_without_a_thread_pool_traceback(tmp_path, capfd):
    clock = FakeClock()
    pipeline, defer, held = queue(tmp_path, clock, directory="/dev/null")
    first = occupy(pipeline, held)
    assert send(pipeline, "/b").kind == "shed:throttle"  # not kept, but never a crash
    held.release()
    first.join(timeout=5)
    assert defer.closed
    assert "Traceback" not in capfd.readouterr().err


# -- item 5: the default folder -----------------------------------------------------------------------------


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """The system temp directory, moved into tmp_path for the test."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def parsed(**values) -> argparse.Namespace:
    return argparse.Namespace(**{option.dest: values.get(option.dest) for option in options.OPTIONS})


def test_the_default_folder_is_the_users_own_and_the_targets(private_tmp):
    built = build_pipeline(("throttle", "defer"), parsed(defer_dir=""), "http://127.0.0.1:3000", FakeClock())
    config = built.policies["defer"].config
    assert config.private
    assert config.directory == private_tmp / f"hammerlab-defer-{os.geteuid()}" / "127.0.0.1_3000"
    assert default_directory("http://localhost") == user_base() / "localhost_80"
    built.policies["defer"].check("DeferredClient")
    for level in (user_base(), config.directory):
        info = level.stat()
        assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.geteuid()
    other = build_pipeline(("throttle", "defer"), parsed(defer_dir=""), "http://127.0.0.1:3001", FakeClock())
    assert other.policies["defer"].config.directory != config.directory  # another target, another queue
    chosen = build_pipeline(
        ("throttle", "defer"), parsed(defer_dir=str(private_tmp / "q")), "http://127.0.0.1:1", FakeClock()
    )
    assert chosen.policies["defer"].config.directory == str(private_tmp / "q")
    assert not chosen.policies["defer"].config.private


def test_a_default_folder_owned_by_someone_else_or_open_to_others_is_refused(private_tmp):
    folder = default_directory("http://127.0.0.1:3000")
    defer = Defer(DeferConfig(folder, drain_every=None, private=True), Throttle(ThrottleConfig(1)))
    defer.check("T")
    os.chmod(folder, 0o777)
    assert "is open to other users (mode 777)" in refused(defer)
    os.chmod(folder, 0o700)
    os.chmod(user_base(), 0o770)
    assert f"--defer-dir {user_base()} is open to other users (mode 770)" in refused(defer)
    os.chmod(user_base(), 0o700)
    os.chown(user_base(), 12345, 12345)  # we are root in this lab: plant a folder as another user
    assert f"--defer-dir {user_base()} belongs to uid 12345, not to you" in refused(defer)


# -- item 5: planted rows ---------------------------------------------------------------------------------


def plant(path, rows) -> None:
    """Rows written straight into a queue file, as another process (or an attacker) could."""
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE IF NOT EXISTS deferred (id INTEGER PRIMARY KEY, method TEXT NOT NULL, "
            "path TEXT NOT NULL, name TEXT, headers TEXT NOT NULL, body BLOB, launched_epoch REAL "
            "NOT NULL, max_age_s REAL NOT NULL, timeout_s REAL)"
        )  # the older schema: upgraded
        for n, (method, path_, headers, body) in enumerate(rows, start=1):
            db.execute(
                "INSERT INTO deferred VALUES (?, ?, ?, NULL, ?, ?, ?, 60, 2)",
                (n, method, path_, headers, body, 1e12),
            )  # launched far in the future: never expired


def states(path) -> dict[int, tuple[str, str | None]]:
    with sqlite3.connect(path) as db:
        return {i: (s, r) for i, s, r in db.execute("SELECT id, state, reason FROM deferred")}


def test_planted_rows_that_fail_the_request_checks_are_set_aside_counted_and_never_sent(tmp_path, caplog):
    plant(
        tmp_path / "T.sqlite",
        [
            ("GET", "/good", "{}", None),
            ("POST", "@10.200.0.1:8081/x", "{}", b"x"),  # a path that names another host
            ("GET", "/a\r\nHost: 10.200.0.1", "{}", None),  # CRLF: a second request line
            ("GET", "/h", "{not json", None),
            ("GET", "/h", '["a list"]', None),
            ("GET", "/h", '{"X-N": 1}', None),  # a number where text belongs
            ("GET", "/h", '{"Host": "10.200.0.1"}', None),  # a header the client owns
            ("GET", "/h", '{"X-A": "a\\r\\nB: c"}', None),
            ("BREW", "/h", "{}", None),
            ("GET", "/h", "{}", "text, not bytes"),
            ("GET", "/good2", '{"X-A": "b"}', None),
        ],
    )
    clock = FakeClock()
    pipeline, defer, held = queue(tmp_path, clock, limit=4)
    with caplog.at_level("INFO", logger="hammerlab"):
        fresh = occupy(pipeline, held, "/fresh")  # the first call opens the queue
    assert (defer.leftovers, defer.bad_rows) == (2, 9)
    assert "9 rows of" in caplog.text and "set aside, never sent" in caplog.text
    assert defer.drain_once() == 2
    wait_until(lambda: held.inside == 3)
    held.release(3)
    fresh.join(timeout=5)
    wait_until(lambda: defer.replayed == 2)
    assert sorted(held.order) == ["/fresh", "/good", "/good2"]  # nothing else reached the transport
    defer.close()  # commits the deletes of the two replayed rows
    found = states(tmp_path / "T.sqlite")
    assert set(found) == set(range(2, 11)) and {s for s, _ in found.values()} == {BAD}
    assert "must start with /" in found[2][1] and "printable ASCII" in found[3][1]
    _, again, _ = queue(tmp_path, FakeClock())
    again.start(lambda call: None)
    assert (again.leftovers, again.bad_rows) == (0, 0)  # counted once, by the run that found them
    again.close()


def test_a_later_run_keeps_the_rows_an_earlier_run_set_aside(tmp_path):
    """Set-aside rows stay in the file for inspection: a later run's new calls take ids past them, never
    their ids (the write is an INSERT OR REPLACE, so a reused id would overwrite the row)."""
    plant(tmp_path / "T.sqlite", [("BREW", "/h", "{}", None), ("GET", "/h", "{not json", None)])
    _, first, _ = queue(tmp_path, FakeClock())
    first.start(lambda call: None)
    assert first.bad_rows == 2
    first.close()
    pipeline, later, held = queue(tmp_path, FakeClock(), limit=1)
    busy = occupy(pipeline, held, "/busy")
    assert send(pipeline, "/new").kind == "shed:deferred"
    busy.kill()
    later.close()
    found = states(tmp_path / "T.sqlite")
    assert [found[1][0], found[2][0]] == [BAD, BAD] and found[3] == ("queued", None)


# -- item 10: a replay whose outcome is unknown ----------------------------------------------------------


def test_a_replay_cut_short_is_sent_again_only_when_that_is_safe(tmp_path, caplog):
    clock = FakeClock()
    pipeline, defer, held = queue(tmp_path, clock, limit=1)
    first = occupy(pipeline, held, "/first")
    calls = [("POST", "/post", {}), ("POST", "/keyed", {"Idempotency-Key": "k1"}), ("PUT", "/put", {})]
    for method, path, headers in calls:
        assert send(pipeline, path, method=method, headers=headers).kind == "shed:deferred"
    first.kill()
    for n in range(3):  # each replay goes on the wire, then the run ends under it
        assert defer.drain_once() == 1
        wait_until(lambda n=n: held.inside == 1)
        (replay,) = defer._replaying.values()
        replay.kill()
    defer.close()
    path = defer.store_path
    assert {s for s, _ in states(path).values()} == {SENDING}

    clock2 = FakeClock()
    pipeline2, defer2, held2 = queue(tmp_path, clock2, limit=4)
    with caplog.at_level("INFO", logger="hammerlab"):
        fresh = occupy(pipeline2, held2, "/fresh")
    assert (defer2.leftovers, defer2.in_doubt) == (2, 1)
    assert "1 deferred calls in" in caplog.text and "never sent again" in caplog.text
    assert defer2.drain_once() == 2
    wait_until(lambda: held2.inside == 3)
    held2.release(3)
    fresh.join(timeout=5)
    wait_until(lambda: defer2.replayed == 2)
    assert sorted(held2.order) == ["/fresh", "/keyed", "/put"]  # the POST without a key: never twice
    defer2.close()  # commits the deletes of the two replayed rows
    assert list(states(path).values()) == [
        (IN_DOUBT, "a replay's outcome is unknown and the call is not safe to send twice")
    ]


def test_a_replay_refused_again_before_the_wire_is_queued_again_not_in_doubt(tmp_path):
    clock = FakeClock()
    throttle = Throttle(ThrottleConfig(max_concurrent=1))
    defer = Defer(DeferConfig(tmp_path, drain_every=None, priority="deferred"), throttle, client="T")
    transport = HeldTransport(clock)
    pipeline = Pipeline([defer, throttle], transport, clock=clock)
    first = occupy(pipeline, transport.held, "/first")
    assert send(pipeline, "/post", method="POST").kind == "shed:deferred"
    gevent.spawn(defer._replay, defer._queue.pop()[1]).join(timeout=5)  # the slot is still taken
    assert defer.requeued == 1
    wait_until(lambda: {s for s, _ in states(defer.store_path).values()} == {"queued"})
    transport.held.release()
    first.join(timeout=5)
    defer.close()


def test_while_draining_a_replay_starts_only_if_it_can_finish_before_the_drain_ends(tmp_path):
    clock = FakeClock()
    pipeline, defer, held = queue(tmp_path, clock, limit=2)
    first = occupy(pipeline, held, "/first")
    second = occupy(pipeline, held, "/second")
    deadline = clock.now() + 5.0
    for path in ("/a", "/b"):
        pipeline.execute(Call("GET", path, launched_at=clock.now(), deadline=deadline))  # a 5 s timeout
    held.release(2)
    gevent.joinall([first, second], timeout=5)
    defer.drain_by(clock.now() + 4.0)  # 4 s of drain left: a 5 s replay might be cut on the wire
    assert defer.drain_once() == 0
    assert defer.wait_drained(5) is False  # returns at once: nothing can start, nothing on the wire
    defer.drain_by(clock.now() + 6.0)
    assert defer.drain_once() == 2
    wait_until(lambda: held.inside == 2)
    held.release(2)
    wait_until(lambda: defer.replayed == 2)
    defer.close()


def test_a_queue_file_of_the_older_schema_is_upgraded_in_place(tmp_path):
    plant(tmp_path / "T.sqlite", [("GET", "/old", "{}", None)])
    _, defer, _ = queue(tmp_path, FakeClock())
    defer.check("T")
    defer.start(lambda call: None)
    assert defer.leftovers == 1
    defer.close()
    assert states(tmp_path / "T.sqlite") == {1: ("queued", None)}


def test_a_hedged_class_announces_a_kept_call_once_not_also_as_the_limiters_shed(tmp_path):
    """Seam defer x hedge (found by tests/test_retry_hedge_seams.py): `Hedge` runs each copy in a
    greenlet of its own, where `Defer` did not look for the call it guards, so the throttle's shed of a
    call it then kept was announced twice, `SHED [throttle]` and `DEFERRED`, and a replay refused again
    (back in line, silently) still got a `SHED [throttle]` row."""
    clock = FakeClock()
    throttle = Throttle(ThrottleConfig(max_concurrent=1))
    defer = Defer(DeferConfig(tmp_path, drain_every=None, priority="deferred"), throttle, client="T")
    transport = HeldTransport(clock)
    pipeline = Pipeline(
        [defer, Hedge(HedgeConfig(delay=0.05, budget=None, pause=0.0)), throttle], transport, clock=clock
    )
    heard = Heard(pipeline.events)
    first = occupy(pipeline, transport.held)
    assert send(pipeline, "/b").kind == "shed:deferred"
    gevent.spawn(defer._replay, defer._queue.pop()[1]).join(timeout=5)  # the slot is still taken
    assert defer.requeued == 1
    assert [kind for kind, path in heard.of("shed") if path == "/b"] == ["shed:deferred"]
    transport.held.release()
    first.join(timeout=5)
    defer.close()


def test_a_replays_refused_retry_is_announced_when_the_replay_ends_not_by_the_call_that_started_the_drain(
    tmp_path,
):
    """The claim follows a hedge's copies up to the call that spawned them, but no further: the drainer
    is spawned by the first call through `Defer`, so a replay's refused retry, announced when the replay
    ended as the 503 it was retrying, must not be taken by that call (still in flight) and held until it
    ends, or dropped if that call is deferred."""
    plant(tmp_path / "T.sqlite", [("GET", "/old", "{}", None)])
    clock = FakeClock()
    breaker = CircuitBreaker(CircuitBreakerConfig(mode="recent-error", recent_error_delay=60.0))
    defer = Defer(DeferConfig(tmp_path, drain_every=0.005, priority="deferred"), breaker, client="T")
    held = HeldCalls(clock)

    class Far:
        def send(self, call: Call) -> Outcome:
            if call.path == "/old":
                return Outcome(call, clock.now(), status=503, error=ServiceUnavailable())
            return held(call)

    retry = Retry(RetryConfig(base=0.0, cap=0.0, budget=None))
    pipeline = Pipeline([defer, retry, breaker], Far(), clock=clock)
    heard = Heard(pipeline.events)
    first = gevent.spawn(send, pipeline, "/a")  # starts the drainer, then waits on the wire
    wait_until(lambda: defer.replayed == 1)  # /old: 503, breaker open, its retry refused
    assert ("shed:circuit-open", "/old") in heard.of("shed")
    held.release()
    first.join(timeout=5)
    defer.close()
