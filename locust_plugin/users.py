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
from locust import User, task
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
        self.rate = options.read(self.environment.parsed_options, "launch_rate")
        self.arrival = options.read(self.environment.parsed_options, "arrival")
        self.path = options.read(self.environment.parsed_options, "path")
        self.request = options.request_spec(self.environment.parsed_options)

    # No on_stop: the runtime owns the requests. A user removed in a ramp-down (a load shape's quiet
    # phase) leaves them to finish and be counted, as a real client's would; the end of the test drains
    # them (`runtime.drain_runtimes`).

    @task
    def launch(self) -> None:
        if self.runtime.closed:  # the test is stopping: wait to be stopped rather than spin
            gevent.sleep(0.5)
        elif self.arrival == "closed":
            self._closed_loop()
        else:
            self._open_loop()

    def _launching(self) -> bool:
        return self._state != LOCUST_STATE_STOPPING and not self.runtime.closed

    def _open_loop(self) -> None:
        clock = SYSTEM_CLOCK
        interval = 1.0 / self.rate
        next_at = clock.now()
        while self._launching():
            delay = next_at - clock.now()
            # Always yield, even when late: a loop that never sleeps starves the hub, and with it the
            # requests it launched, Locust's run-time timer and its signal handlers.
            gevent.sleep(max(0.0, delay))
            if not self._launching():
                break
            self.runtime.launch(self.make_call(next_at))
            next_at += interval
            behind = clock.now() - next_at
            if behind > interval:  # stalled: drop the missed slots instead of bursting to catch up
                skipped = int(behind / interval)
                self.runtime.skip(skipped)
                next_at += skipped * interval

    def _closed_loop(self) -> None:
        clock = SYSTEM_CLOCK
        interval = 1.0 / self.rate
        while self._launching():
            started = clock.now()
            request = self.runtime.launch(self.make_call(started))
            if request is None and self.runtime.closed:
                break
            if request is not None:
                request.join()  # the runtime owns it, so stopping this user does not cut it short
            gevent.sleep(max(0.0, started + interval - clock.now()))

    def make_call(self, launched_at: float) -> Call:
        """The request to launch at `launched_at`: --method, --path, --header, --body or --body-file.
        Override it to send something else."""
        return self.request.call(launched_at)
