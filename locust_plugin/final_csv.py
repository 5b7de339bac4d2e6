"""Rewrite `PREFIX_stats.csv` and `PREFIX_failures.csv` once more as Locust exits.

Locust's CSV writer rewrites those files once a second and never at exit, so with `--csv` the last
second of every run (its requests and its failures) is missing from them; in an open-loop lab that is
up to a few hundred requests. This listener writes both files from Locust's own final stats, with
Locust's own columns and row formatting, as Locust starts to quit.

It first stops Locust's writer greenlet. Locust 2.47's shutdown closes the writer's files but never
kills the greenlet (`locust.main` spawns `stats_writer` without keeping it), so any yield to gevent after
the close (Locust's own `--processes` exit hook sleeps) let it write to a closed file: a traceback at
exit. Nothing reaches that greenlet but the garbage collector's list of objects, so it is found there.
"""

from __future__ import annotations

import csv
import gc
from pathlib import Path
from typing import Any

import gevent
from locust import events
from locust.runners import WorkerRunner
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV, StatsCSVFileWriter

STOP_TIMEOUT_S = 5.0


def stop_locust_csv_writer() -> int:
    """Kill every live greenlet running `StatsCSVFileWriter.stats_writer`; returns how many. It sleeps
    between writes and writes whole rounds between sleeps, so the kill lands between two rounds."""
    writers = [
        item
        for item in gc.get_objects()
        if isinstance(item, gevent.Greenlet)
        and not item.dead
        # `_run` is the callable given to `gevent.spawn` (gevent keeps it there, as its repr shows)
        and isinstance(getattr(getattr(item, "_run", None), "__self__", None), StatsCSVFileWriter)
        and getattr(item._run, "__name__", "") == "stats_writer"
    ]
    gevent.killall(writers, block=True, timeout=STOP_TIMEOUT_S)
    return len(writers)


def write_final_csvs(environment: Any, prefix: str) -> None:
    """Both files, complete, from `environment.stats` as it stands now."""
    writer = StatsCSV(environment, PERCENTILES_TO_REPORT)
    for suffix, columns, rows in (
        ("_stats.csv", writer.requests_csv_columns, writer._requests_data_rows),
        ("_failures.csv", writer.failures_columns, writer._failures_data_rows),
    ):
        with Path(prefix + suffix).open("w", newline="") as handle:
            out = csv.writer(handle)
            out.writerow(columns)
            rows(out)


@events.init.add_listener
def _remember(environment: Any, **_: Any) -> None:
    prefix = getattr(environment.parsed_options, "csv_prefix", None)
    if not prefix or isinstance(environment.runner, WorkerRunner):
        return

    def on_quitting(**_: Any) -> None:
        stop_locust_csv_writer()
        write_final_csvs(environment, prefix)

    # `quitting`, not `quit`: by `quit`, `--json-file` has already cleared every entry
    # (`get_stripped_report`), leaving only the total.
    environment.events.quitting.add_listener(on_quitting)
