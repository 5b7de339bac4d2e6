"""Base Locust users: a client application that sends its requests through a shared mitigation pipeline.

`MitigatedClient` is abstract. A concrete client in `locustfiles/` only names its mitigations:

    class ThrottledClient(MitigatedClient):
        mitigations = ("throttle",)

Each Locust user is one client application. With `--arrival open` (the default, the seed's model) it
launches `--launch-rate` requests per second on a fixed schedule, each in its own greenlet, whatever
happens to earlier ones; a stalled schedule skips the missed slots rather than bursting to catch up.
With `--arrival closed` it is a classic Locust user: one request at a time, paced to the same rate.
"""

from __future__ import annotations

from typing import ClassVar

import gevent
from gevent.pool import Group
from locust import User, task
from locust.runners import STATE_CLEANUP, STATE_STOPPED, STATE_STOPPING
from locust.user.users import LOCUST_STATE_STOPPING

from locust_plugin import options
from locust_plugin.runtime import ClientRuntime, runtime_for
from mitigations.core import SYSTEM_CLOCK, Call


class MitigatedClient(User):
    """One client application whose requests all go through its class's shared pipeline."""

    abstract = True
    mitigations: ClassVar[tuple[str, ...]] = ()
    """Names from `locust_plugin.pipelines.MITIGATIONS`, applied in the pipeline's fixed order."""

    def on_start(self) -> None:
        self.runtime: ClientRuntime = runtime_for(type(self), self.environment)
        self._requests = Group()
        self.rate = options.read(self.environment.parsed_options, "launch_rate")
        self.arrival = options.read(self.environment.parsed_options, "arrival")
        self.path = options.read(self.environment.parsed_options, "path")

    def on_stop(self) -> None:
        # A user removed in a ramp-down (a load shape's quiet phase) leaves its requests to finish and
        # be counted, as a real client's would. Only the end of the whole test cancels them.
        runner = self.environment.runner
        if runner is None or runner.state in (STATE_CLEANUP, STATE_STOPPING, STATE_STOPPED):
            self._requests.kill(block=False)

    @task
    def launch(self) -> None:
        if self.arrival == "closed":
            self._closed_loop()
        else:
            self._open_loop()

    def _open_loop(self) -> None:
        clock = SYSTEM_CLOCK
        interval = 1.0 / self.rate
        next_at = clock.now()
        while self._state != LOCUST_STATE_STOPPING:
            delay = next_at - clock.now()
            if delay > 0:
                gevent.sleep(delay)
            self._requests.spawn(self.runtime.send, self.make_call(next_at))
            next_at += interval
            behind = clock.now() - next_at
            if behind > interval:  # stalled: drop the missed slots instead of bursting to catch up
                skipped = int(behind / interval)
                self.runtime.skipped += skipped
                next_at += skipped * interval

    def _closed_loop(self) -> None:
        clock = SYSTEM_CLOCK
        interval = 1.0 / self.rate
        while self._state != LOCUST_STATE_STOPPING:
            started = clock.now()
            self.runtime.send(self.make_call(started))
            gevent.sleep(max(0.0, started + interval - clock.now()))

    def make_call(self, launched_at: float) -> Call:
        """The request to launch at `launched_at`. Override it to send something else than `--path`."""
        return Call(method="GET", path=self.path, launched_at=launched_at)
