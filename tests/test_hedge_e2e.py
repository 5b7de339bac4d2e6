"""Hedged requests against real servers on loopback: the loser is cancelled and the server sees it go
(both transports, keep-alive on, so a half-read connection put back in the pool would show), the hedge
carries the call's remaining deadline, no hedge for POST, the budget holds under overload, and a real
Locust run counts a hedged call once and writes `hedged` and `hedge_won`."""

from __future__ import annotations

import socket
import time

import gevent
import pytest
from gevent.server import StreamServer

from mitigations.core import Call, MonotonicClock, Outcome, Pipeline
from mitigations.hedge import Hedge, HedgeConfig
from mitigations.retry import RetryBudgetConfig
from mitigations.timeout import DEADLINE_HEADER, Timeouts
from mitigations.transport import HTTP_BACKENDS, TransportConfig, make_transport
from tests.conftest import launch_target
from tests.locust_run import read_csv, run_locust
from tests.open_loop import offer

pytestmark = pytest.mark.slow
CLOCK = MonotonicClock()
SLOW_MS = 1000
# The hedge delay sits far from both the tail and the natural latency: at 150 ms, under busy loops a third
# of the fast calls passed it on their own, their primaries then beat the hedges (hedged 10, won 1).
HEDGE_DELAY_MS = 300
# Locust's read timeout (1 s by default) far above the tail too: near it, slow calls time out on a busy
# machine and end as errors, retries and breaker sheds instead of hedges.
TIMEOUTS = ("--read-timeout-ms", "3000", "--request-timeout-ms", "4000")


@pytest.fixture(scope="module")
def tail_target():
    """A healthy target where 30 % of requests sleep SLOW_MS first (a tail independent of load)."""
    server = launch_target(fault=[f"slow:rate=0.3,delay_ms={SLOW_MS}"], seed=7)
    try:
        yield server
    finally:
        server.stop()


def hedged_pipeline(url: str, backend: str, config: HedgeConfig) -> tuple[Pipeline, Hedge]:
    policy = Hedge(config)
    transport = make_transport(
        backend,
        TransportConfig(base_url=url, keep_alive=True, timeouts=Timeouts(connect=2.0, read=3.0, total=3.0)),
        CLOCK,
    )
    return Pipeline([policy], transport, clock=CLOCK), policy


def settled_stats(server, before_requests: int, expected: int) -> dict:
    """/stats once every request the server got has ended (the losers finish their sleep first): at least
    `expected` new ones, none in flight, and no new one for 0.3 s."""
    deadline = time.monotonic() + SLOW_MS / 1000 + 3
    last = None
    while True:
        stats = server.stats()
        settled = stats["in_flight"] == 0 and stats["requests_total"] - before_requests >= expected
        if (settled and last is not None and last == stats["requests_total"]) or time.monotonic() > deadline:
            return stats
        last = stats["requests_total"] if settled else None
        time.sleep(0.3 if settled else 0.05)


def hedges_seen(after: dict, before: dict, calls: int, hedged: int, won: int) -> None:
    """The server got every call and between `won` and `hedged` hedges: each hedge that won was sent, and
    none twice. Not always all `hedged`: on a busy machine a call can pass the hedge delay on its own, and
    when its primary then answers while the hedge is still connecting, the hedge is cancelled unsent."""
    seen = after["requests_total"] - before["requests_total"]
    assert calls + won <= seen <= calls + hedged, (seen, calls, won, hedged)


@pytest.mark.parametrize("backend", HTTP_BACKENDS)
def test_the_loser_is_cancelled_and_the_server_sees_its_connection_close(tail_target, backend):
    before = tail_target.stats()
    pipeline, policy = hedged_pipeline(
        tail_target.url, backend, HedgeConfig(delay=HEDGE_DELAY_MS / 1000, budget=None, pause=0.0)
    )
    outcomes = offer(pipeline, rate=40, seconds=1.0)
    assert len(outcomes) == 40 and all(o.ok and o.length > 0 for o in outcomes)
    assert policy.hedged >= 3 and policy.hedge_won >= 2  # 30 % slow: about 12 hedges
    # The hedge's answer came long before the slow primary's would have.
    assert max(o.latency for o in outcomes if o.call.hedge) < SLOW_MS / 1000
    after = settled_stats(tail_target, before["requests_total"], 40 + policy.hedge_won)
    hedges_seen(after, before, 40, policy.hedged, policy.hedge_won)
    abandoned = after["abandoned_total"] - before["abandoned_total"]
    # Every primary that lost was still sleeping at the server: closed (not kept in the pool, where the
    # server would see a live keep-alive connection), it is abandoned and its work skipped.
    assert policy.hedge_won <= abandoned <= policy.hedged


class FirstIsSlow:
    """A loopback server that keeps every request head; the first request (with `every`, each one) gets
    its answer after `hold` seconds, unless its client hangs up first, which it records; others at once."""

    def __init__(self, hold: float, every: bool = False) -> None:
        self.hold = hold
        self.every = every
        self.heads: list[bytes] = []
        self.hung_up = 0
        self.server = StreamServer(("127.0.0.1", 0), self._serve)

    def _serve(self, conn: socket.socket, _address: object) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        self.heads.append(data.split(b"\r\n\r\n")[0])
        if len(self.heads) == 1 or self.every:
            conn.settimeout(self.hold)
            try:
                if conn.recv(1) == b"":
                    self.hung_up += 1
                    return
            except TimeoutError:
                pass
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    def deadline_ms(self, index: int) -> int:
        for line in self.heads[index].split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().decode().lower() == DEADLINE_HEADER.lower():
                return int(value.strip())
        raise AssertionError(f"no {DEADLINE_HEADER} in {self.heads[index]!r}")


@pytest.mark.parametrize("backend", HTTP_BACKENDS)
def test_the_hedge_carries_the_calls_remaining_deadline(backend):
    far = FirstIsSlow(hold=2.0)
    far.server.start()
    try:
        url = f"http://127.0.0.1:{far.server.server_port}"
        policy = Hedge(HedgeConfig(delay=0.2, budget=None))
        config = TransportConfig(base_url=url, timeouts=Timeouts(total=3.0))
        transport = make_transport(backend, config, CLOCK)
        pipeline = Pipeline([policy], transport, clock=CLOCK, total_timeout=3.0)
        outcome = pipeline.execute(Call("GET", "/x", launched_at=CLOCK.now()))
        assert outcome.ok and outcome.call.hedge
        first, second = far.deadline_ms(0), far.deadline_ms(1)
        assert 2800 <= first <= 3000
        assert 150 <= first - second <= 400  # the hedge left 0.2 s later, with 0.2 s less to live
        gevent.sleep(0.1)
        assert far.hung_up == 1  # the primary's connection was closed when it lost
    finally:
        far.server.stop()


@pytest.mark.parametrize("backend", HTTP_BACKENDS)
def test_no_hedge_for_post(backend):
    far = FirstIsSlow(hold=0.4, every=True)
    far.server.start()
    try:
        url = f"http://127.0.0.1:{far.server.server_port}"
        pipeline, policy = hedged_pipeline(url, backend, HedgeConfig(delay=0.05, budget=None, pause=0.0))
        calls = [
            gevent.spawn(pipeline.execute, Call("POST", "/order", launched_at=CLOCK.now(), body=b"{}"))
            for _ in range(4)
        ]
        gevent.joinall(calls, timeout=5)
        assert all(job.value is not None and job.value.ok for job in calls)
        assert len(far.heads) == 4 and all(head.startswith(b"POST ") for head in far.heads)
        assert policy.hedged == 0 and policy.unsafe == 4 and far.hung_up == 0
    finally:
        far.server.stop()


def test_the_budget_holds_under_overload(start_target):
    """About 2 x capacity, every call slow, the pause off: only the budget stands between the client and
    a hedge storm. Amplification at the server stays at most 1 + budget, plus a few tokens of slack."""
    server = start_target()
    before = server.stats()
    pipeline, policy = hedged_pipeline(
        server.url, "fast", HedgeConfig(delay=0.03, budget=RetryBudgetConfig(ratio=0.05), pause=0.0)
    )
    outcomes: list[Outcome] = offer(pipeline, rate=180, seconds=1.0)
    calls = len(outcomes)
    assert calls == 180
    assert policy.budget_denials > policy.hedged  # most slow calls wanted a hedge and were refused
    assert policy.hedged <= 0.05 * calls + 1
    after = settled_stats(server, before["requests_total"], calls)
    amplification = (after["requests_total"] - before["requests_total"]) / calls
    assert amplification <= 1.05 + 0.02


def test_a_locust_run_counts_a_hedged_call_once(tail_target, tmp_path):
    before = tail_target.stats()
    run = run_locust(
        "HedgedClient", tail_target.url, 3, "--launch-rate", "30", "--hedge-delay-ms", str(HEDGE_DELAY_MS),
        "--hedge-budget", "100", "--hedge-pause-ms", "0", "--max-concurrent", "64", "--drain-s", "3",
        *TIMEOUTS, tmp_path=tmp_path,
    )  # fmt: skip
    assert run.returncode in (0, 1), run.output[-2000:]
    final = [r for r in read_csv(tmp_path / "HedgedClient_mitigations.csv") if r["worker"] == "local"][-1]
    hedged, won, launched = int(final["hedged"]), int(final["hedge_won"]), int(final["launched_total"])
    assert hedged >= 3 and 1 <= won <= hedged
    ends = sum(int(final[k]) for k in ("ok_total", "server_errors_total", "shed_total", "unfinished_total"))
    assert ends == launched  # each hedged call ended once
    # In Locust's stats too: one row entry per call, the primary's or the hedge's (the loser has none).
    answered = int(final["ok_total"]) + int(final["server_errors_total"])
    assert run.count("GET", "/doWork") + run.count("GET", "/doWork [hedge]") == answered
    assert run.count("GET", "/doWork [hedge]") == won
    after = settled_stats(tail_target, before["requests_total"], launched + won)
    hedges_seen(after, before, launched, hedged, won)
