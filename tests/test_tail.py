"""The tail scenario: a share of requests held long at the target (its `slow` fault) at 0.5 x C, each
class's p99, p99.9 and extra requests (requests at the server per call, hedges), and a short real run."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from comparison.__main__ import parse_config
from comparison.config import ConfigError, RunConfig, build_plan
from comparison.narrative import describe
from comparison.scenarios import scenario_of
from comparison.scenarios.tail import TailOptions, hedges, server_requests
from comparison.summary import Summary

ROOT = Path(__file__).resolve().parent.parent
C = 90.0


def test_the_tail_is_an_option_of_its_own_with_one_line_errors():
    config = parse_config(["--scenario", "tail"])
    assert config.scenario_options == TailOptions(0.02, 800.0)
    assert config.clients == ("CombinedClient", "HedgedClient")
    assert parse_config(["--scenario", "tail", "--clients", "HammerClient"]).clients == ("HammerClient",)
    picked = parse_config(["--scenario", "tail", "--tail-share", "0.05", "--tail-delay-ms", "300"])
    assert picked.scenario_options.fault == "slow:rate=0.05,delay_ms=300"
    with pytest.raises(ConfigError, match=r"--tail-share: must be from 0.001 to 0.2 .*got 0.5"):
        parse_config(["--scenario", "tail", "--tail-share", "0.5"])
    with pytest.raises(ConfigError, match=r"--tail-delay-ms: must be from 50 to 5000 ms, got 10"):
        parse_config(["--scenario", "tail", "--tail-delay-ms", "10"])
    with pytest.raises(ConfigError, match="--tail-share: only for --scenario tail"):
        parse_config(["--scenario", "cliff", "--tail-share", "0.1"])
    with pytest.raises(ConfigError, match="--host: the tail scenario starts its own target"):
        parse_config(["--scenario", "tail", "--host", "http://127.0.0.1:9"])


def test_half_of_c_against_a_target_with_the_slow_fault():
    config = RunConfig(scenario="tail", scenario_options=TailOptions(0.01, 500.0))
    plan = build_plan(config, C)
    assert plan.offered_rps == pytest.approx(0.5 * C)
    prepared = scenario_of("tail").prepare(config, plan, C)
    assert prepared.target_args == ("--fault", "slow:rate=0.01,delay_ms=500")
    assert "1.0 % of requests held 500 ms at the server" in prepared.note


def test_server_requests_and_hedges_come_from_the_class_files(tmp_path):
    server = tmp_path / "X_server.csv"
    server.write_text("timestamp,elapsed_s,requests_total\n1000,0,0\n1001,1,40\n1012,12,917\n")
    assert server_requests(server) == 917
    mitigations = tmp_path / "X_mitigations.csv"
    mitigations.write_text(
        "timestamp,worker,client,hedged,hedge_won\n"
        "1001,all,HedgedClient,3,2\n1012,all,HedgedClient,18,17\n1012,local,HedgedClient,99,99\n"
        "1012,all,CombinedClient,,\n"
    )
    assert hedges(mitigations, "HedgedClient") == (18, 17)
    assert hedges(mitigations, "CombinedClient") == (None, None)
    assert hedges(tmp_path / "missing.csv", "HedgedClient") == (None, None)
    assert server_requests(tmp_path / "missing.csv") is None


def summary(client: str, p99: float, p999: float, received: int, hedged: int | None) -> Summary:
    base = Summary(client, "tail", C, 45.0, 1000.0, 45.0, 1.0, 45.0, 900, 900, 0, "", 0, "",
                   0, 0, None, None, None, None, 0, 50.0, 60.0, p99, p999, 1000.0, 10, 20.0, 10.0,
                   10, 5, None)  # fmt: skip
    return scenario_of("tail").extra(
        base,
        server_requests=received,
        requests_per_call_x=received / 900,
        hedged=hedged,
        hedge_won=None if hedged is None else hedged - 1,
    )


def test_the_row_gains_its_columns_and_the_narrative_compares_the_tails():
    rows = [
        summary("CombinedClient", 862.0, 1003.0, 900, None),
        summary("HedgedClient", 197.0, 318.0, 917, 18),
    ]
    cells = rows[1].cells()
    assert list(cells)[-4:] == ["server_requests", "requests_per_call_x", "hedged", "hedge_won"]
    assert (cells["server_requests"], cells["requests_per_call_x"]) == ("917", "1.02")
    assert (cells["hedged"], cells["hedge_won"], rows[0].cells()["hedged"]) == ("18", "17", "")
    plan = build_plan(RunConfig(scenario="tail"), C)
    text = " ".join(describe(rows, plan))
    assert "with a share of requests held long at the server" in text
    assert (
        "Against the tail, HedgedClient had the lowest p99.9, 318 ms against CombinedClient's 1,003 ms "
        "(0.32 x), for +1.9 % (18 hedges, 17 won) extra requests (CombinedClient: +0.0 %)." in text
    )
    three = [*rows, summary("HammerClient", 870.0, 990.0, 900, None)]
    assert "The others: HammerClient p99 870 ms, p99.9 990 ms, +0.0 % extra requests." in describe(
        three, plan
    )
    markdown = scenario_of("tail").markdown(Path("."), plan, [], rows)
    assert "| HedgedClient | 197 ms | 318 ms | 900 | 917 | +1.9 % (18 hedges, 17 won) |" in markdown


@pytest.mark.slow
def test_a_short_real_tail_run(tmp_path):
    """6 s of HedgedClient at 0.5 x a C given as 80/s, a tail of 5 % held 400 ms, against the real
    embedded target: the server saw the tail's hedges, and the row, sentence and sections say so.
    The hedge delay is fixed at 100 ms: the adaptive p95 sits on the edge of a 5 % tail, and on a
    busy machine it fired late enough that originals won every race (CI: 10 hedged, 0 won)."""
    result = subprocess.run(
        [sys.executable, "-m", "comparison", "--scenario", "tail", "--tail-share", "0.05",
         "--tail-delay-ms", "400", "--clients", "HedgedClient", "--duration", "6", "--capacity", "80",
         "--drain-s", "2", "--results-dir", str(tmp_path), "--", "--hedge-delay-ms", "100"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir() and not p.is_symlink()]
    with (run / "summary.csv").open(newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    launched, received = int(row["launched"]), int(row["server_requests"])
    assert row["scenario"] == "tail" and launched == pytest.approx(40 * 6, rel=0.2)
    assert int(row["hedged"]) >= 1 and int(row["hedge_won"]) >= 1  # the tail was there, and was cut
    # each call reached the server once, a hedge at most once more (a loser cancelled early never did);
    # the sampler's last row is a record the target took after the drain, so it counts every call
    assert int(row["ok"]) == launched  # every call was answered, so the server did see each one
    assert launched <= received <= launched + int(row["hedged"])
    assert float(row["requests_per_call_x"]) == pytest.approx(received / launched, abs=0.006)
    assert "Against the tail, HedgedClient had" in (run / "summary.md").read_text()
    assert "## The tail" in (run / "summary.md").read_text()
    assert "<h2>The tail</h2>" in (run / "report.html").read_text()
