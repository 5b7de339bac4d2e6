"""The one outbound client of a user class in this process: its pipeline, its ledger and its requests.

All users of a class share it, as the seed's one HTTP agent was shared by every request. It lives on the
Locust `Environment` (not in a module global) and is rebuilt at each test start, so options edited in
the web UI take effect on the next run.

The runtime owns every request greenlet of its class, not the user that launched it: a user removed in
a ramp-down leaves its requests to finish and count, and the end of the test reaches all of them. When a
test stops, `close` stops new launches and `drain` lets what is in flight finish for a bounded time; what
is still running then is ended and counted as `unfinished`, so no call of one test can land in the next.
"""

from __future__ import annotations

import logging
from typing import Any

import gevent
from gevent.pool import Group

from locust_plugin import options
from locust_plugin.ledger import CallLedger
from locust_plugin.pipelines import BuiltPipeline, build_pipeline
from locust_plugin.reporter import LocustReporter
from locust_plugin.tracing import otel_requested, trace_pipeline
from mitigations.core import SYSTEM_CLOCK, Call, Outcome
from mitigations.criticality import CriticalityMix, CriticalityStamper
from mitigations.csv_schema import skip_share, too_many_skipped
from mitigations.defer import Defer

_ATTRIBUTE = "hammerlab_runtimes"
# The most calls one client class keeps in flight in one process. Past it the launcher skips the slot (a
# generator that cannot start what it schedules is behind, and says so) instead of piling up greenlets
# that no process can time honestly, or end quickly when the test stops. The seed's client peaked at
# about 2,500.
MAX_IN_FLIGHT = 10_000
log = logging.getLogger("hammerlab")


class ClientRuntime:
    """Counts what one client application does, the way the seed's client logged it, and more."""

    def __init__(
        self,
        name: str,
        built: BuiltPipeline,
        locust_events: Any,
        slo_ms: float = 1000.0,
        mix: CriticalityMix | None = None,
    ) -> None:
        self.name = name
        self.pipeline = built.pipeline
        self.policies = built.policies
        self.ledger = CallLedger(slo_ms, split=mix is not None)
        # --criticality-mix: labels this class's calls in launch order (docs/criticality.md)
        self.stamper = CriticalityStamper(mix) if mix is not None else None
        self.requests = Group()
        self.closed = False
        self.concurrent = 0
        self.max_concurrent = 0
        self.completed = 0
        self.warned = False
        self.reporter = LocustReporter(locust_events, name)
        self.pipeline.events.on("replayed", self.ledger.replayed_final)
        self.pipeline.events.on("expired", self.ledger.expire)
        self.pipeline.events.on("recovered", self.ledger.recover)
        self.reporter.attach(self.pipeline.events)  # last: it names the pipeline, which may replay at once
        self.pipeline.events.on("state", self._log_state)
        self.defer = next((p for p in self.policies.values() if isinstance(p, Defer)), None)

    # The seed's client-side counters, kept under their old names for the live views.
    @property
    def launched(self) -> int:
        return self.ledger.launched

    @property
    def skipped(self) -> int:
        return self.ledger.skipped

    def _log_state(self, policy: object, old: str, new: str) -> None:
        log.info("%s: %s %s -> %s", self.name, getattr(policy, "name", "policy"), old, new)

    def launch(self, call: Call) -> gevent.Greenlet | None:
        """Start `call` in its own greenlet, owned by this runtime. None once the runtime is closed, or
        when `MAX_IN_FLIGHT` calls are already running (the slot is counted as skipped)."""
        if self.closed:
            return None
        if len(self.requests) >= MAX_IN_FLIGHT:
            self.ledger.skip(1)
            return None
        if self.stamper is not None:
            call.headers = dict(call.headers)  # never the request spec's own mapping
            self.stamper.stamp(call.headers)
        return self.requests.spawn(self.send, call)

    def send(self, call: Call) -> Outcome | None:
        """Run one logical call through the pipeline and count its final outcome exactly once.

        Returns None when the call was ended before it finished (the drain ran out): it is counted as
        unfinished and reported on its own `UNFINISHED` row."""
        self.ledger.launch(call)
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        outcome: Outcome | None = None
        try:
            outcome = self.pipeline.execute(call)
            return outcome
        finally:
            self.concurrent -= 1
            self.completed += 1
            if outcome is not None:
                self.ledger.finish(outcome)
            else:  # killed (GreenletExit) or a bug below: either way it never got an answer
                self.ledger.abandon(call)
                self.reporter.on_unfinished(call, SYSTEM_CLOCK.now())

    def skip(self, slots: int) -> None:
        self.ledger.skip(slots)

    def close(self) -> None:
        """No new launches from now on (the test is stopping)."""
        self.closed = True

    def drain(self, timeout_s: float, report: bool = True) -> int:
        """Wait up to `timeout_s` for the calls in flight, then end the rest. Returns how many were ended.
        With `report=False` nothing more reaches Locust's stats (a leftover from an earlier test)."""
        self.close()
        self.reporter.enabled = report
        if timeout_s > 0 and len(self.requests):
            self.requests.join(timeout=timeout_s)
        left = len(self.requests)
        if left:
            # spawned on schedule but not begun: killed before `send` runs, so they are counted here
            never_ran = [g.args[0] for g in self.requests if g.gr_frame is None and not g.dead]
            self.requests.kill(block=True, timeout=5)
            for call in never_ran:
                self.ledger.launch(call)
                self.ledger.abandon(call)
                self.reporter.on_unfinished(call, SYSTEM_CLOCK.now())
        return left

    def drain_deferred(self, timeout_s: float) -> int:
        """Give `Defer`'s queue up to `timeout_s` to replay; what is still queued then counts as
        unfinished in this run (it stays on disk for the next). Returns how many."""
        if self.defer is None:
            return 0
        if timeout_s > 0 and self.ledger.pending:
            self.defer.wait_drained(timeout_s)
        self.defer.stop_replaying()
        cut = self.defer.finish_replays()  # the drain started only replays that fit: they end now
        if cut:
            log.warning("hammerlab: %s: %d replays were still on the wire after the drain; their outcome "
                        "is unknown (docs/defer.md: in doubt)", self.name, cut)  # fmt: skip
        self.defer.close()  # none can finish after being counted
        return self.ledger.abandon_pending()

    def warn_if_skipped(self) -> None:
        """One warning line when the launcher could not keep the rate (see `csv_schema.SKIP_WARN_SHARE`)."""
        launched, skipped = self.ledger.launched, self.ledger.skipped
        if too_many_skipped(launched, skipped) and not self.warned:
            self.warned = True  # a worker drains twice: once for the master, once when told to stop
            log.warning(
                "hammerlab: %s skipped %d of %d launch slots (%.1f%%): the load generator could not keep "
                "the rate; these numbers understate latency",
                self.name, skipped, launched + skipped, 100 * skip_share(launched, skipped),
            )  # fmt: skip


def runtimes(environment: Any) -> dict[str, ClientRuntime]:
    """Every client runtime of this process, by class name."""
    found = getattr(environment, _ATTRIBUTE, None)
    if found is None:
        found = {}
        setattr(environment, _ATTRIBUTE, found)
    return found


def reset_runtimes(environment: Any, **_: Any) -> None:
    """Forget every runtime (listener for `test_start`): the next user builds a fresh pipeline.
    Whatever an earlier test left running is ended first, so it cannot reach this test's numbers."""
    for runtime in runtimes(environment).values():
        runtime.drain(0, report=False)
    setattr(environment, _ATTRIBUTE, {})


def drain_seconds(environment: Any) -> float:
    """How long a stopping test waits for calls in flight: Locust's `--stop-timeout` when the user set
    one, else `--drain-s`."""
    stop_timeout = getattr(environment, "stop_timeout", None) or 0
    if stop_timeout > 0:
        return float(stop_timeout)
    return float(options.read(environment.parsed_options, "drain_s"))


def drain_runtimes(environment: Any, **_: Any) -> None:
    """Listener for `test_stopping`: stop launching, let calls in flight finish, end the rest."""
    table = runtimes(environment)
    if not table:
        return
    for runtime in table.values():
        runtime.close()
    deadline = SYSTEM_CLOCK.now() + drain_seconds(environment)
    for runtime in table.values():
        if runtime.defer is not None:  # replays that start from now on must end within the drain
            runtime.defer.drain_by(runtime.defer.clock.now() + deadline - SYSTEM_CLOCK.now())
    for runtime in table.values():
        ended = runtime.drain(max(0.0, deadline - SYSTEM_CLOCK.now()))
        if ended:
            log.warning("hammerlab: %s: %d calls were still in flight after the drain; counted unfinished",
                        runtime.name, ended)  # fmt: skip
        queued = runtime.drain_deferred(max(0.0, deadline - SYSTEM_CLOCK.now()))
        if queued:
            log.warning("hammerlab: %s: %d deferred calls were still queued after the drain; counted "
                        "unfinished here, kept on disk for the next run", runtime.name, queued)  # fmt: skip
        runtime.warn_if_skipped()


def runtime_for(user_class: type, environment: Any) -> ClientRuntime:
    """The shared runtime of `user_class`, built on first use in this test."""
    table = runtimes(environment)
    runtime = table.get(user_class.__name__)
    if runtime is None:
        host = user_class.host or environment.host
        if not host:
            raise ValueError("no host: pass --host http://127.0.0.1:3000 or set host in locust.conf")
        built = build_pipeline(user_class.mitigations, environment.parsed_options, host, SYSTEM_CLOCK)
        if otel_requested(environment.parsed_options):
            trace_pipeline(built.pipeline, user_class.__name__)
        slo_ms = options.read(environment.parsed_options, "slo_ms")
        mix = options.read(environment.parsed_options, "criticality_mix")
        runtime = table[user_class.__name__] = ClientRuntime(
            user_class.__name__, built, environment.events, slo_ms, CriticalityMix(*mix) if mix else None
        )
    return runtime
