"""Rewrite `PREFIX_stats.csv` and `PREFIX_failures.csv` once more as Locust exits.

Locust's CSV writer rewrites those files once a second and never at exit, so with `--csv` the last
second of every run (its requests and its failures) is missing from them; in an open-loop lab that is
up to a few hundred requests. This listener writes both files from Locust's own final stats, with
Locust's own columns and row formatting, as Locust starts to quit.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from locust import events
from locust.runners import WorkerRunner
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV


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
        write_final_csvs(environment, prefix)

    # `quitting`, not `quit`: by `quit`, `--json-file` has already cleared every entry
    # (`get_stripped_report`), leaving only the total.
    environment.events.quitting.add_listener(on_quitting)
