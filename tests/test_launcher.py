"""The open-loop launcher, in-process with Locust's own runner against the real target server."""

from __future__ import annotations

import time
from types import SimpleNamespace

import gevent
import locust
import pytest
from locust.env import Environment

from locust_plugin.runtime import runtimes
from locustfiles.clients import HammerClient

pytestmark = pytest.mark.slow


@pytest.fixture
def environment():
    made: list[Environment] = []

    def make(host: str) -> Environment:
        env = Environment(user_classes=[HammerClient], host=host, events=locust.events)
        env.create_local_runner()
        made.append(env)
        return env

    yield make
    for env in made:
        env.runner.quit()


def test_launches_on_schedule_whatever_happens_to_earlier_requests(start_target, environment):
    server = start_target(sync_work_ms=0, task_delay_ms=500)  # every answer takes half a second
    env = environment(server.url)
    env.runner.start(1, spawn_rate=10)
    gevent.sleep(1.0)
    runtime = runtimes(env)["HammerClient"]
    # 100/s for one second although not one answer came back yet: open loop, not closed.
    assert 80 <= runtime.launched <= 115, runtime.launched
    assert runtime.concurrent >= 40
    assert env.stats.total.num_requests < runtime.launched


def test_a_stalled_schedule_skips_missed_slots_instead_of_bursting(start_target, environment):
    server = start_target(sync_work_ms=0, task_delay_ms=0)
    env = environment(server.url)
    env.runner.start(1, spawn_rate=10)
    gevent.sleep(0.5)
    runtime = runtimes(env)["HammerClient"]
    before = runtime.launched
    spin_until = time.monotonic() + 0.4
    while time.monotonic() < spin_until:  # block the whole process, as a busy load generator would
        pass
    gevent.sleep(0.01)
    assert runtime.skipped >= 25, runtime.skipped  # ~40 slots missed while blocked
    assert runtime.launched - before <= 10, "no burst of catch-up launches"


def test_a_ramp_down_lets_the_removed_users_requests_finish_and_count(start_target, environment):
    server = start_target(sync_work_ms=0, task_delay_ms=600)
    env = environment(server.url)
    env.runner.start(3, spawn_rate=100)
    gevent.sleep(1.0)
    env.runner.start(1, spawn_rate=100)  # two users go; their ~120 requests are still in flight
    gevent.sleep(0.05)
    launched_before = runtimes(env)["HammerClient"].launched - 5  # minus any the survivor launched since
    gevent.sleep(1.2)  # every request launched before the ramp-down has had its 600 ms
    assert env.stats.get("/doWork", "GET").num_requests >= launched_before


def test_closed_loop_waits_for_each_answer(start_target, environment):
    server = start_target(sync_work_ms=0, task_delay_ms=200)
    env = environment(server.url)
    env.parsed_options = SimpleNamespace(arrival="closed")
    env.runner.start(2, spawn_rate=100)
    gevent.sleep(1.1)
    runtime = runtimes(env)["HammerClient"]
    assert runtime.max_concurrent <= 2  # one request at a time per user
    assert 6 <= runtime.launched <= 14, runtime.launched  # ~5 a second each, paced by the answers
