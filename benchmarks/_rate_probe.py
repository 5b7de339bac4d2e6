"""A Locust plugin file for the generator-capacity benchmark: what one process really sent.

Passed as an extra `-f` file. WARMUP_S after the test starts it notes the wire requests so far (and, for
Hammerlab clients, launched calls and skipped launch slots); when the test starts stopping (before the
drain) it notes them again, with the process CPU, and writes one JSON object to $HAMMERLAB_RATE_PROBE.
The steady window between the two notes leaves out the users' spawn and the drain.
"""

import json
import os
import time

import gevent
from locust import events

WARMUP_S = 2.0
_state: dict[str, object] = {}


def _ledgers(environment: object) -> tuple[int, int]:
    found = getattr(environment, "hammerlab_runtimes", None) or {}
    launched = sum(runtime.ledger.launched for runtime in found.values())
    skipped = sum(runtime.ledger.skipped for runtime in found.values())
    return launched, skipped


def _note(environment: object) -> dict[str, float]:
    launched, skipped = _ledgers(environment)
    return {
        "at": time.monotonic(),
        "cpu": time.process_time(),
        "requests": float(_state.get("requests", 0)),  # type: ignore[arg-type]
        "launched": launched,
        "skipped": skipped,
    }


@events.test_start.add_listener
def _start(environment: object, **_: object) -> None:
    _state.clear()
    _state["requests"] = 0

    def warm() -> None:
        _state["first"] = _note(environment)

    _state["timer"] = gevent.spawn_later(WARMUP_S, warm)


@events.request.add_listener
def _count(request_type: str, **_: object) -> None:
    if request_type not in ("SHED", "UNFINISHED"):
        _state["requests"] = int(_state.get("requests", 0)) + 1  # type: ignore[arg-type]


@events.test_stopping.add_listener
def _stopping(environment: object, **_: object) -> None:
    path = os.environ.get("HAMMERLAB_RATE_PROBE")
    first = _state.get("first")
    if not path or not isinstance(first, dict):
        return
    last = _note(environment)
    record = {key: last[key] - first[key] for key in last}
    with open(path, "w") as handle:
        json.dump(record, handle)
