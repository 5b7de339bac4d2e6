"""Criticality end to end on the client side: a real Locust run of ThrottledClient with
`--criticality-mix critical=0.3` at about 2 x the target's capacity. The throttle keeps 30 % of its
slots for critical calls, so far more of the critical calls are served within the SLO than of the
sheddable ones; the split reaches PREFIX_mitigations.csv with the identity in each class, and the
summary's criticality columns."""

import pytest

from comparison.criticality import criticality_cells
from comparison.readers import read_client
from tests.locust_run import read_csv, run_locust

pytestmark = pytest.mark.slow

SECONDS = 5


def test_critical_calls_are_admitted_first_under_overload(start_target, tmp_path):
    server = start_target()
    run = run_locust(
        "ThrottledClient", server.url, SECONDS, "--launch-rate", "180", "--max-concurrent", "6",
        "--criticality-mix", "critical=0.3", "--drain-s", "3", tmp_path=tmp_path,
    )  # fmt: skip
    assert run.returncode in (0, 1), run.output[-2000:]
    path = tmp_path / "ThrottledClient_mitigations.csv"
    final = [r for r in read_csv(path) if r["worker"] == "local"][-1]
    share = {}
    for label in ("critical", "sheddable"):
        launched = int(final[f"{label}_launched_total"])
        ends = ("ok_total", "server_errors_total", "shed_total", "unfinished_total")
        assert sum(int(final[f"{label}_{end}"]) for end in ends) == launched  # the identity, per class
        share[label] = int(final[f"{label}_slo_ok_total"]) / launched
    launched = int(final["launched_total"])
    assert int(final["critical_launched_total"]) + int(final["sheddable_launched_total"]) == launched
    assert abs(int(final["critical_launched_total"]) - 0.3 * launched) <= 1
    assert int(final["sheddable_shed_total"]) > int(final["critical_shed_total"])
    assert share["critical"] >= share["sheddable"] + 0.25, share
    cells = dict(criticality_cells(read_client(path, "ThrottledClient")[-1], float(SECONDS)))
    assert cells["critical_slo_attainment"] == pytest.approx(share["critical"])
    assert cells["critical_p99_ms"] is not None and cells["sheddable_slo_goodput_rps"] > 0
    # the target's own split (PREFIX_server.csv, from its status series): every call that was not shed
    # reached it with its label, and the sampler's last record is one taken after the drain
    server_row = read_csv(tmp_path / "ThrottledClient_server.csv")[-1]
    for label in ("critical", "sheddable"):
        on_the_wire = int(final[f"{label}_launched_total"]) - int(final[f"{label}_shed_total"])
        assert int(server_row[f"{label}_requests_total"]) == on_the_wire, label
        assert int(server_row[f"{label}_completed_total"]) >= int(final[f"{label}_ok_total"])
