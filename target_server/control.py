"""What /admin changes: the active faults, the run-time config overrides and the reset epoch.

It is plain data that round-trips through JSON, because gunicorn workers share it through a file
(cluster.py): an admin request in one worker writes it under a lock, and the others adopt it. `owner` is
the gunicorn master that wrote it, so a new server ignores a file left by an old one.
"""

from __future__ import annotations

from typing import Any

from target_server.faults import ActiveFault, FaultBook


class ControlState:
    """This process's copy; `to_json` and `adopt` are the two ends of the shared file."""

    def __init__(self, faults: FaultBook) -> None:
        self.faults = faults
        self.overrides: dict[str, tuple[Any, float | None]] = {}
        self.reset_epoch = 0
        self.reset_at: float | None = None
        self.owner = 0

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "faults": [fault.to_json(now) for fault in self.faults.active(now)],
            "next_fault_id": self.faults.next_id,
            "overrides": {name: {"value": v, "until": until} for name, (v, until) in self.overrides.items()},
            "reset_epoch": self.reset_epoch,
            "reset_at": self.reset_at,
        }

    def adopt(self, data: dict[str, Any]) -> None:
        self.owner = int(data.get("owner", 0))
        self.faults.replace_all(ActiveFault.from_json(item) for item in data.get("faults", ()))
        self.faults.next_id = int(data.get("next_fault_id", 1))
        self.overrides = {
            name: (item["value"], item["until"]) for name, item in data.get("overrides", {}).items()
        }
        self.reset_epoch = int(data.get("reset_epoch", 0))
        self.reset_at = data.get("reset_at")
