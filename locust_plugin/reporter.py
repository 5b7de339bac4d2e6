"""Turns pipeline events into Locust request events, so every outcome lands in the right stats row.

  - an attempt that reached the wire: `GET /doWork` (first attempts), `GET /doWork [retry]` or
    `GET /doWork [hedge]` (the second copy `Hedge` sent; a cancelled loser never comes back, so it has
    no row), failed with its server-failure kind when it failed;
  - a call a mitigation held back: `SHED /doWork [throttle]`, with one stable exception per cause, so it
    never enters the wire rows' latency percentiles and `_failures.csv` tells "the server failed" apart
    from "the client held back";
  - a call `Defer` kept for later: `DEFERRED /doWork`; its final outcome once replayed:
    `REPLAYED /doWork` (response time: from the original launch to the final answer, failed with the
    final error if it failed); a kept call that grew too old: `EXPIRED /doWork`. A replay's own wire
    attempt is in `GET /doWork` like any other, timed from the moment the replay started.
  - a call still in flight when the test's drain ran out: `UNFINISHED /doWork`, failed with `Unfinished`,
    its time the seconds it had been in flight (a lower bound on a latency nobody saw).

Response times count from the scheduled launch, so queueing inside the client is never hidden.
"""

from __future__ import annotations

from typing import Any

from mitigations.core import Call, Deferred, HammerError, Outcome, PipelineEvents
from mitigations.csv_schema import SHED_REQUEST_TYPE, UNFINISHED_REQUEST_TYPE


class Unfinished(HammerError):
    """The test ended, and its drain ran out, before this call got an answer. Neither the server's
    failure nor a mitigation's choice: a miss against the SLO with no latency to record."""

    kind = "unfinished"


DEFERRED_REQUEST_TYPE = "DEFERRED"
REPLAYED_REQUEST_TYPE = "REPLAYED"
EXPIRED_REQUEST_TYPE = "EXPIRED"


def wire_row_name(outcome: Outcome) -> str:
    label = outcome.call.label
    if outcome.call.hedge:
        return f"{label} [hedge]"
    return label if outcome.call.attempt == 1 else f"{label} [retry]"


def shed_row_name(outcome: Outcome) -> str:
    return f"{outcome.call.label} [{outcome.error.cause}]"  # type: ignore[union-attr]


class LocustReporter:
    """Listens to one pipeline's events and fires Locust's `request` event for each outcome."""

    def __init__(self, locust_events: Any, client_name: str) -> None:
        self._request = locust_events.request
        self.client_name = client_name
        self.enabled = True

    def attach(self, events: PipelineEvents) -> None:
        events.on("wire", self.on_wire)
        events.on("shed", self.on_shed)
        events.on("replayed", self.on_replayed)
        events.on("expired", self.on_expired)
        events.emit("client", self.client_name)  # names the pipeline (Defer's file) after its class

    def on_wire(self, outcome: Outcome) -> None:
        """`_fire` for an attempt that reached the wire, unrolled: it runs for every attempt."""
        if not self.enabled:
            return
        call, error = outcome.call, outcome.error
        self._request.fire(
            request_type=call.method.upper(),
            name=wire_row_name(outcome),
            response_time=max(0.0, outcome.latency * 1000.0),
            response_length=outcome.length,
            exception=error,
            context={"client": self.client_name, "attempt": call.attempt, "kind": outcome.kind},
        )

    def on_shed(self, outcome: Outcome) -> None:
        if isinstance(outcome.error, Deferred):
            self._fire(DEFERRED_REQUEST_TYPE, outcome.call.label, outcome)
        else:
            self._fire(SHED_REQUEST_TYPE, shed_row_name(outcome), outcome)

    def on_replayed(self, outcome: Outcome) -> None:
        self._fire(REPLAYED_REQUEST_TYPE, outcome.call.label, outcome, defer="replayed")

    def on_expired(self, outcome: Outcome) -> None:
        self._fire(EXPIRED_REQUEST_TYPE, outcome.call.label, outcome, defer="expired")

    def on_unfinished(self, call: Call, now: float) -> None:
        if not self.enabled:
            return
        self._request.fire(
            request_type=UNFINISHED_REQUEST_TYPE,
            name=call.label,
            response_time=max(0.0, (now - call.launched_at) * 1000.0),
            response_length=0,
            exception=Unfinished(),
            context={"client": self.client_name, "attempt": call.attempt, "kind": Unfinished.kind},
        )

    def _fire(self, request_type: str, name: str, outcome: Outcome, defer: str | None = None) -> None:
        if not self.enabled:
            return
        context: dict[str, Any] = {"client": self.client_name, "attempt": outcome.call.attempt}
        if defer is None:
            context["kind"] = outcome.kind
        else:  # the end of a call already counted as deferred: no `kind`, so nothing counts it twice
            context["defer"] = defer
        self._request.fire(
            request_type=request_type,
            name=name,
            response_time=max(0.0, outcome.latency * 1000.0),
            response_length=outcome.length,
            exception=outcome.error,
            context=context,
        )
