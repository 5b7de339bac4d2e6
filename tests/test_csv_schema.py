"""One schema per CSV: the writers in locust_plugin and the readers in comparison use the same names.

Nothing is renamed here. The checks are that the writer's header is the schema, that every field a reader
fills is a column of the schema, and that a row written by the real writer reads back as the same
numbers. A column renamed in one place only fails one of them.
"""

from __future__ import annotations

import ast
import csv
from dataclasses import fields
from pathlib import Path

import pytest

from comparison.readers import ClientRow, ServerRow, read_client, read_server
from locust_plugin.client_stats import ClientSnapshot
from locust_plugin.csv_log import CsvLog
from locust_plugin.ledger import CallLedger
from locust_plugin.mitigations_board import MitigationsBoard
from locust_plugin.server_sample import make_sample
from mitigations import csv_schema
from mitigations.core import Call, Outcome
from mitigations.csv_schema import ALL_WORKERS, MITIGATION_COLUMNS, SERVER_COLUMNS

ROOT = Path(__file__).resolve().parent.parent


def status(at: float, completed: int) -> dict:
    return {
        "time": at, "since_reset_s": 100.0, "reset_count": 0, "lag_ms": 12.3, "in_flight": 3,
        "concurrent": 2, "sockets": 4, "requests_total": completed + 1, "completed_total": completed,
        "rejected_total": 1, "errors_total": 0, "faults": [{"kind": "hang", "rate": 0.2}],
        "peak_lag_ms": 40.0, "peak_in_flight": 9, "peak_sockets": 11, "expired_total": 2,
        "work_cpu_ms_total": 50.0, "wasted_cpu_ms_total": 5.0,
    }  # fmt: skip


def same(read: object, wrote: object) -> bool:
    """Equal, numbers to the decimals the writer keeps."""
    if isinstance(wrote, float) and isinstance(read, int | float):
        return read == pytest.approx(wrote, abs=0.05)
    return read == wrote


def written(path: Path, columns: tuple[str, ...], rows: list[dict[str, str]]) -> list[str]:
    log = CsvLog(path, columns)
    log.write(rows)
    log.close()
    with path.open(newline="", encoding="utf-8") as handle:
        return next(csv.reader(handle))


def test_the_server_csv_reads_back_what_the_sampler_wrote(tmp_path):
    first = make_sample(status(100.0, 10), None, received_at=1000.0, started_at=999.0)
    second = make_sample(status(101.0, 60), first, received_at=1001.0, started_at=999.0)
    path = tmp_path / "x_server.csv"
    assert tuple(written(path, SERVER_COLUMNS, [s.csv_row() for s in (first, second)])) == SERVER_COLUMNS
    assert {f.name for f in fields(ServerRow)} <= set(SERVER_COLUMNS)
    [_, row] = read_server(path)
    for name in (f.name for f in fields(ServerRow)):
        value = getattr(second, name)
        expected = ";".join(value) if isinstance(value, tuple) else value
        assert same(getattr(row, name), expected), name


def test_the_mitigations_csv_reads_back_what_the_board_wrote(tmp_path):
    ledger = CallLedger(slo_ms=100)
    call = Call("GET", "/doWork", launched_at=10.0)
    ledger.launch()
    ledger.finish(Outcome(call=call, finished_at=10.02, status=200))
    snap = ClientSnapshot(
        client="C", at=1000.0, started_at=998.0, concurrent=1, max_concurrent=4, launched=2,
        completed=1, skipped=1, wire=1, ok=ledger.ok, slo_ms=100.0, slo_ok=ledger.slo_ok,
        latency_hdr=ledger.encoded_histogram(), limit=7, deferred=3, replayed=2, expired=1,
        defer_queue_depth=5, shed_by_cause={"throttle": 1},
    )  # fmt: skip
    board = MitigationsBoard()
    board.update("local", 1, [snap])
    rows = board.rows(1000.0, 2.0)
    path = tmp_path / "x_mitigations.csv"
    assert tuple(written(path, MITIGATION_COLUMNS, [r.csv_row() for r in rows])) == MITIGATION_COLUMNS
    assert {f.name for f in fields(ClientRow)} <= set(MITIGATION_COLUMNS)
    [row] = read_client(path, "C")
    total = next(r for r in rows if r.worker == ALL_WORKERS)
    for name in (f.name for f in fields(ClientRow)):
        expected = getattr(total, name, None)
        if name in csv_schema.LATENCY_COLUMNS:
            expected = getattr(total.latency, name)
        elif name == "shed_by_cause":
            expected = "throttle=1"
        assert same(getattr(row, name), expected), name
    assert (row.limit, row.deferred_total, row.skipped_total) == (7, 3, 1)
    assert row.p50_ms == pytest.approx(20, rel=0.01)


def test_no_module_copies_a_constant_of_the_schema():
    """`SKIP_WARN_SHARE` and the rest are imported from `mitigations.csv_schema`, never assigned again."""
    names = {"SKIP_WARN_SHARE", "SERVER_COLUMNS", "MITIGATION_COLUMNS", "ALL_WORKERS", "LOCAL_WORKER",
             "SHED_REQUEST_TYPE", "UNFINISHED_REQUEST_TYPE", "SHED_TYPE", "UNFINISHED_TYPE"}  # fmt: skip
    copies = []
    for package in ("locust_plugin", "comparison", "mitigations", "benchmarks", "target_server"):
        for path in (ROOT / package).rglob("*.py"):
            if path.name == "csv_schema.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Assign | ast.AnnAssign):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    found = [t.id for t in targets if isinstance(t, ast.Name) and t.id in names]
                    copies += [f"{path.name}:{name}" for name in found]
                if isinstance(node, ast.FunctionDef) and node.name in {"skip_share", "too_many_skipped"}:
                    copies.append(f"{path.name}:{node.name}")
    assert copies == []
