"""The pipeline's event hub: policies emit what they do, observers (the Locust side, a tracer) listen."""

from __future__ import annotations

from collections.abc import Callable

Listener = Callable[..., None]


class PipelineEvents:
    """A tiny event hub: policies `emit`, observers `on(...)`. Listeners must not block.

    Event names used across the project:
      - `wire(outcome)`: an attempt came back from the transport (ok or a server failure);
      - `shed(outcome)`: a policy held a call back;
      - `state(policy, old, new)`: a stateful policy changed state (breaker opened, ...);
      - `limit(policy, value)`: an adaptive limit moved;
      - `retry(call, delay)`: a retry was scheduled;
      - `hedge(call)`: `Hedge` sent a second copy of a slow call (`call.hedge` is True);
      - `client(name)`: the Locust side named the client class this pipeline belongs to;
      - `replayed(outcome)`: a call `Defer` had deferred got its final outcome (ok, a server failure,
        or a shed that is not deferrable); `outcome.call.launched_at` is the original launch;
      - `expired(outcome)`: a deferred call passed its max age and was dropped unsent (`DeferExpired`);
      - `recovered(count)`: `Defer` found `count` calls left on disk by an earlier run, to replay first.
    """

    def __init__(self) -> None:
        self._listeners: dict[str, list[Listener]] = {}
        self._claimers: dict[str, list[Callable[..., bool]]] = {}

    def on(self, event: str, listener: Listener) -> None:
        self._listeners.setdefault(event, []).append(listener)

    def claim(self, event: str, claimer: Callable[..., bool]) -> None:
        """Let `claimer(*args)` take `event` before any listener hears it: when it returns True, none
        does. A policy that turns another policy's outcome into something else (`Defer` keeps a call a
        limiter shed) claims it, so the outcome is not announced as two different things."""
        self._claimers.setdefault(event, []).append(claimer)

    def emit(self, event: str, *args: object) -> None:
        for claimer in self._claimers.get(event, ()):
            if claimer(*args):
                return
        for listener in self._listeners.get(event, ()):
            listener(*args)
