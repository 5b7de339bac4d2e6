"""With --csv, Locust's stats and failures files hold the whole run, not all but its last second."""

from __future__ import annotations

import json

import pytest

from tests.locust_run import run_locust

pytestmark = pytest.mark.slow


def test_stats_and_failures_csv_count_every_request_to_the_end(start_target, tmp_path):
    server = start_target(fault=["error:rate=0.2"])
    json_prefix = tmp_path / "final"
    run = run_locust(
        "HammerClient",
        server.url,
        3,
        "--launch-rate",
        "100",
        "--json-file",
        str(json_prefix),
        tmp_path=tmp_path,
    )
    final = {entry["name"]: entry for entry in json.loads((tmp_path / "final.json").read_text())}["/doWork"]
    row = run.row("GET", "/doWork")
    assert row is not None, run.output[-1500:]
    # Locust's own writer stops up to a second (~100 requests here) short; a few requests may still
    # finish while Locust stops its users, after the last write.
    assert 0 <= final["num_requests"] - int(row["Request Count"]) <= 5
    failures = sum(int(r["Occurrences"]) for r in run.failures())
    assert 0 <= final["num_failures"] - failures <= 5
    assert failures == int(row["Failure Count"]) > 0
