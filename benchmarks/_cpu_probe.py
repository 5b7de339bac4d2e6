"""A Locust plugin file for benchmarks: the process CPU seconds and wire requests between start and stop.

Passed as an extra `-f` file; writes one JSON line to $HAMMERLAB_CPU_PROBE when the test stops.
"""

import json
import os
import time

from locust import events

_state: dict[str, float] = {}


@events.test_start.add_listener
def _start(**_: object) -> None:
    _state["cpu"] = time.process_time()
    _state["wall"] = time.monotonic()
    _state["requests"] = 0


@events.request.add_listener
def _count(request_type: str, exception: object, **_: object) -> None:
    if request_type != "SHED":
        _state["requests"] = _state.get("requests", 0) + 1


@events.test_stop.add_listener
def _stop(**_: object) -> None:
    path = os.environ.get("HAMMERLAB_CPU_PROBE")
    if not path or "cpu" not in _state:
        return
    record = {
        "cpu_s": time.process_time() - _state["cpu"],
        "wall_s": time.monotonic() - _state["wall"],
        "requests": _state["requests"],
    }
    with open(path, "w") as handle:
        json.dump(record, handle)
