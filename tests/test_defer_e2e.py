"""Defer end to end, at a real server that records every request's Idempotency-Key:

- replays carry the key (and body) of the call they replay, through the real HTTP transport;
- a Locust process killed with SIGKILL mid-burst leaves its queue on disk, and the next run of the class
  replays exactly those calls, says how many it found, and every call of the killed run is accounted for.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import gevent
import pytest

from locust_plugin import options
from locust_plugin.pipelines import build_pipeline
from mitigations.core import SYSTEM_CLOCK, Call
from tests.locust_run import ROOT, LocustRun, locust_command, read_csv

pytestmark = pytest.mark.slow
LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")


@pytest.fixture
def recorder(tmp_path):
    """A recording server (tests/recording_server.py) answering after 40 ms; yields (url, records)."""
    records = tmp_path / "records.jsonl"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "recording_server.py"), str(records), "--delay-ms", "40"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        match = LISTENING.search(proc.stdout.readline())
        assert match, "the recording server did not start"

        def read() -> list[dict]:
            if not records.exists():
                return []
            return [json.loads(line) for line in records.read_text().splitlines() if line.endswith("}")]

        yield match.group(1), read
    finally:
        proc.kill()
        proc.wait(timeout=5)


def parsed(**values) -> argparse.Namespace:
    return argparse.Namespace(**{option.dest: values.get(option.dest) for option in options.OPTIONS})


def test_replays_carry_the_idempotency_key_and_body_of_their_call(recorder, tmp_path):
    url, records = recorder
    read = parsed(defer_dir=str(tmp_path), max_concurrent=2, defer_priority="deferred")
    built = build_pipeline(("throttle", "defer", "timeout"), read, url, SYSTEM_CLOCK)
    defer = built.policies["defer"]
    replayed = []
    built.pipeline.events.on("replayed", replayed.append)
    calls = [
        Call(
            "POST",
            "/doWork",
            launched_at=SYSTEM_CLOCK.now(),
            headers={"Idempotency-Key": f"k{n}"},
            body=f"body{n}".encode(),
        )
        for n in range(20)
    ]
    first = [gevent.spawn(built.pipeline.execute, call) for call in calls]
    gevent.joinall(first, timeout=10)
    kinds = Counter(g.value.kind for g in first)
    assert kinds == {"ok": 2, "shed:deferred": 18}, kinds  # two slots; the rest kept
    assert defer.wait_drained(10)
    defer.close()
    built.pipeline.transport.close()

    seen = records()
    assert sorted(r["key"] for r in seen) == sorted(f"k{n}" for n in range(20))  # each exactly once
    assert all(r["method"] == "POST" and r["body"] == "body" + r["key"][1:] for r in seen)
    assert len(replayed) == 18 and all(o.ok for o in replayed)
    assert {o.header("Idempotency-Key") or o.call.headers["Idempotency-Key"] for o in replayed} == {
        f"k{n}" for n in range(2, 20)
    }


def queued_keys(db_path: Path) -> list[str]:
    with sqlite3.connect(db_path) as db:
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'deferred'").fetchall():
            return []  # the file exists, its table not yet
        rows = db.execute("SELECT headers FROM deferred ORDER BY id").fetchall()
    return [json.loads(headers)["Idempotency-Key"] for (headers,) in rows]


def locust_argv(url: str, seconds: float, rate: int, defer_dir: Path, *extra: str) -> list[str]:
    return locust_command(
        "--stop-timeout", "0", "--launch-rate", str(rate), "--max-concurrent", "2", "--defer-dir",
        str(defer_dir), *extra, "KeyedDeferredClient",
        seconds=seconds, host=url, locustfile="tests/defer_locustfile.py",
    )  # fmt: skip


def number(key: str) -> int:
    return int(key.split("-", 1)[1])


def test_sigkill_mid_burst_then_the_next_run_replays_every_leftover(recorder, tmp_path):
    url, records = recorder
    defer_dir = tmp_path / "defer"
    db_path = defer_dir / "KeyedDeferredClient.sqlite"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    # Run a: 150 calls/s at a server that serves ~50/s through 2 slots; killed once 120 are queued.
    killed = subprocess.Popen(
        locust_argv(url, 30, 150, defer_dir),
        cwd=ROOT,
        env={**env, "HAMMERLAB_TEST_RUN": "a"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if db_path.exists() and len(queued_keys(db_path)) >= 120:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the killed run never queued 120 calls")
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=10)
    assert killed.returncode == -signal.SIGKILL
    time.sleep(0.2)  # requests the dead process had sent finish arriving
    queued = queued_keys(db_path)
    sent_a = [r["key"] for r in records() if (r["key"] or "").startswith("a-")]

    # Every call of run a is at the server or on disk, but for the few in the dead process's hands.
    launched = max(number(key) for key in [*queued, *sent_a]) + 1
    unaccounted = set(range(launched)) - {number(k) for k in [*sent_a, *queued]}
    assert len(unaccounted) <= 5, (launched, sorted(unaccounted))
    assert len(set(sent_a) & set(queued)) <= 2  # a replay on the wire at the kill: at-least-once
    assert len(queued) == len(set(queued)) >= 120

    # Run b: same class, same folder, a trickle of new calls. It replays run a's leftovers.
    before = len(records())
    prefix = tmp_path / "b"
    result = subprocess.run(
        [*locust_argv(url, 8, 5, defer_dir, "--csv", str(prefix))],
        cwd=ROOT,
        env={**env, "HAMMERLAB_TEST_RUN": "b"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    run_b = LocustRun(result.returncode, result.stdout + result.stderr, prefix)
    assert f"KeyedDeferredClient: found {len(queued)} deferred calls left by an earlier run" in run_b.output
    replayed_a = [r["key"] for r in records()[before:] if (r["key"] or "").startswith("a-")]
    assert Counter(replayed_a) == Counter(queued)  # exactly the leftovers, each once
    order = [number(k) for k in replayed_a]
    rank = {n: i for i, n in enumerate(sorted(order))}
    assert all(abs(rank[n] - i) <= 1 for i, n in enumerate(order))  # oldest first (2 slots may swap two)
    assert queued_keys(db_path) == []
    assert run_b.count("REPLAYED", "/doWork") >= len(queued)
    assert run_b.count("EXPIRED", "/doWork") == 0


# -- issue 18: the ledger on every row, a clean stop during replays, an unusable --defer-dir ----------------

LEDGER_PARTS = ("ok_total", "server_errors_total", "shed_total", "unfinished_total", "pending", "concurrent")


def assert_identity_on_every_row(prefix: Path) -> int:
    """launched = ok + server_errors + shed + unfinished + pending + in flight, on every row; returns
    the rows' count of pending calls at their peak (so a test can tell the queue was used)."""
    rows = read_csv(Path(f"{prefix}_mitigations.csv"))
    assert rows
    for row in rows:
        assert int(row["launched_total"]) == sum(int(row[name]) for name in LEDGER_PARTS), row
    return max(int(row["pending"]) for row in rows)


def test_deferred_clients_ledger_identity_holds_on_every_row_of_a_real_run(recorder, tmp_path):
    url, _ = recorder
    prefix = tmp_path / "run"
    command = locust_command(
        "--stop-timeout", "0", "--max-concurrent", "2", "--launch-rate", "100", "--defer-dir",
        str(tmp_path / "q"), "--server-sample-ms", "100", "--drain-s", "2", "--csv", str(prefix),
        "DeferredClient", seconds=3, host=url,
    )  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert assert_identity_on_every_row(prefix) > 0  # the queue held calls while rows were written


def test_a_clean_stop_during_replays_never_sends_a_post_twice(recorder, tmp_path):
    """Run a stops (drain 0.6 s) while its queue is replaying; run b replays what a left. A POST without
    an Idempotency-Key reaches the server at most once. On the old code the drain cut the replays on the
    wire and left their rows, and run b sent them again."""
    url, records = recorder
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def run(name: str, seconds: float, rate: int, drain: float) -> LocustRun:
        prefix = tmp_path / name
        argv = [
            *locust_argv(url, seconds, rate, tmp_path / "q")[:-1],
            "--csv",
            str(prefix),
            "--drain-s",
            str(drain),
            "--request-timeout-ms",
            "500",
            "--read-timeout-ms",
            "500",
            "UnkeyedDeferredClient",
        ]
        result = subprocess.run(
            argv,
            cwd=ROOT,
            env={**env, "HAMMERLAB_TEST_RUN": name},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "Traceback" not in result.stderr, result.stderr[-2000:]
        return LocustRun(result.returncode, result.stdout + result.stderr, prefix)

    run_a = run("a", 2, 150, 0.6)
    assert_identity_on_every_row(run_a.prefix)
    with sqlite3.connect(tmp_path / "q" / "UnkeyedDeferredClient.sqlite") as db:
        left = db.execute("SELECT COUNT(*) FROM deferred WHERE state = 'queued'").fetchone()[0]
    assert left > 0  # the stop came while the queue was still replaying
    run_b = run("b", 3, 2, 8.0)
    assert f"found {left} deferred calls left by an earlier run" in run_b.output
    assert_identity_on_every_row(run_b.prefix)
    final_b = read_csv(Path(f"{run_b.prefix}_mitigations.csv"))[-1]
    assert final_b["defer_in_doubt_total"] == "0"  # the drain let a's replays finish: none was cut
    assert "still on the wire after the drain" not in run_a.output
    sent = Counter(r["body"] for r in records() if r["method"] == "POST")
    assert sum(1 for body in sent if body.startswith("a-")) >= left
    assert [body for body, times in sent.items() if times > 1] == []


def refused_run(defer_dir: str, *prefix: str) -> subprocess.CompletedProcess:
    command = locust_command("--defer-dir", defer_dir, "DeferredClient", seconds=1, host="http://127.0.0.1:9")
    return subprocess.run([*prefix, *command], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_an_unusable_defer_dir_is_refused_at_start_with_exit_2_and_one_line(tmp_path):
    (tmp_path / "DeferredClient.sqlite").write_text("not a database")
    result = refused_run(str(tmp_path))
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if "hammerlab: error" in line]
    assert errors == [
        f"hammerlab: error: DeferredClient: --defer-dir: {tmp_path}/DeferredClient.sqlite is "
        "not a usable SQLite database (file is not a database)"
    ]
    assert "Traceback" not in result.stderr


def test_a_defer_dir_on_a_read_only_filesystem_is_refused_at_start(tmp_path):
    """A read-only tmpfs mounted in a private mount namespace (`unshare -m`): root ignores permission
    bits, so a chmod 0500 folder would not stop it; a read-only filesystem does."""
    ro = tmp_path / "ro"
    ro.mkdir()
    script = f'mount -t tmpfs -o ro,size=1m tmpfs {ro} && exec "$@"'
    for target, problem in (
        (ro, "cannot be written (Read-only file system)"),
        (ro / "q", "cannot be used (Read-only file system)"),
    ):
        result = refused_run(str(target), "unshare", "-m", "sh", "-c", script, "_")
        assert result.returncode == 2, result.stderr[-2000:]
        assert f"hammerlab: error: DeferredClient: --defer-dir {target} {problem}" in result.stderr
        assert "Traceback" not in result.stderr
