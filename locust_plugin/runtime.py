"""The one outbound client of a user class in this process: its pipeline, its gauges and its reporter.

All users of a class share it, as the seed's one HTTP agent was shared by every request. It lives on the
Locust `Environment` (not in a module global) and is rebuilt at each test start, so options edited in
the web UI take effect on the next run.
"""

from __future__ import annotations

import logging
from typing import Any

from locust_plugin.pipelines import BuiltPipeline, build_pipeline
from locust_plugin.reporter import LocustReporter
from mitigations.core import SYSTEM_CLOCK, Call, Outcome

_ATTRIBUTE = "hammerlab_runtimes"
log = logging.getLogger("hammerlab")


class ClientRuntime:
    """Counts what one client application does, the way the seed's client logged it."""

    def __init__(self, name: str, built: BuiltPipeline, locust_events: Any) -> None:
        self.name = name
        self.pipeline = built.pipeline
        self.policies = built.policies
        self.concurrent = 0
        self.max_concurrent = 0
        self.launched = 0
        self.skipped = 0
        self.completed = 0
        LocustReporter(locust_events, name).attach(self.pipeline.events)
        self.pipeline.events.on("state", self._log_state)

    def _log_state(self, policy: object, old: str, new: str) -> None:
        log.info("%s: %s %s -> %s", self.name, getattr(policy, "name", "policy"), old, new)

    def send(self, call: Call) -> Outcome:
        """Run one logical call through the pipeline, keeping the client's own `concurrent` count."""
        self.launched += 1
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            return self.pipeline.execute(call)
        finally:
            self.concurrent -= 1
            self.completed += 1


def runtimes(environment: Any) -> dict[str, ClientRuntime]:
    """Every client runtime of this process, by class name."""
    found = getattr(environment, _ATTRIBUTE, None)
    if found is None:
        found = {}
        setattr(environment, _ATTRIBUTE, found)
    return found


def reset_runtimes(environment: Any, **_: Any) -> None:
    """Forget every runtime (listener for `test_start`): the next user builds a fresh pipeline."""
    setattr(environment, _ATTRIBUTE, {})


def runtime_for(user_class: type, environment: Any) -> ClientRuntime:
    """The shared runtime of `user_class`, built on first use in this test."""
    table = runtimes(environment)
    runtime = table.get(user_class.__name__)
    if runtime is None:
        host = user_class.host or environment.host
        if not host:
            raise ValueError("no host: pass --host http://127.0.0.1:3000 or set host in locust.conf")
        built = build_pipeline(user_class.mitigations, environment.parsed_options, host, SYSTEM_CLOCK)
        runtime = table[user_class.__name__] = ClientRuntime(user_class.__name__, built, environment.events)
    return runtime
