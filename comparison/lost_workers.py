"""The workers a class lost mid-run, named with when: from their own rows in PREFIX_mitigations.csv.

The master marks a worker lost when Locust's heartbeat says it is missing (it died or was cut off; see
`locust_plugin.worker_watch`); from then on that worker's rows carry `worker_lost_at_s` and, in
`lost_with_worker`, the calls it had in flight at its last report. A worker that reported again later
has a final row without them: it came back, and is not lost.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from comparison.readers import ClientRow


@dataclass(frozen=True)
class LostWorker:
    worker: str
    at_s: float  # seconds since the test started, on the master's clock, when it was marked lost
    calls: int  # its calls in flight or pending at its last report: `lost_with_worker`

    @property
    def cell(self) -> str:
        return f"{self.worker} at {self.at_s:.1f} s"


def lost_workers(instances: Mapping[str, Sequence[ClientRow]]) -> list[LostWorker]:
    """Every worker whose final row says it was lost, in the order they were lost. `instances`: one
    class's rows by worker (`readers.read_instances`), as the summary has already read them."""
    found = []
    for worker, rows in instances.items():
        final = max(rows, key=lambda row: row.timestamp)
        if final.worker_lost_at_s is not None:
            found.append(LostWorker(worker, final.worker_lost_at_s, final.lost_with_worker))
    return sorted(found, key=lambda lost: (lost.at_s, lost.worker))


def cell(lost: list[LostWorker]) -> str:
    """The summary's `lost_workers` cell: `host_ab12 at 6.2 s`, several joined by `; `."""
    return "; ".join(item.cell for item in lost)


def note(client: str, lost: LostWorker) -> str:
    """One line for summary.md and report.html."""
    return (
        f"{client}: worker {lost.worker} was lost {lost.at_s:.1f} s into the run (the master heard no "
        "heartbeat from it for Locust's liveness window, about 4 s: it died or was cut off). What it "
        f"reported stays counted; the {lost.calls} calls it had in flight at its last report are in "
        "lost_with_worker."
    )
