"""Losing a worker, on the master's board: the identity holds through `lost_with_worker`, and a worker
that comes back replaces its numbers instead of adding them (docs/distributed.md).

The thing under test is the master's merge (`MitigationsBoard` and `MitigationRow`), fed the cumulative
snapshots a worker sends. Hypothesis drives two or three workers, each a small ledger model whose
snapshots keep the worker-side identity (launched = ok + server_errors + shed + unfinished + pending +
concurrent), through a drawn sequence of: work, a report that arrives, a report that is lost on a cut
link, the master losing the worker, and a worker reporting again after it was lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st
from locust.runners import STATE_MISSING, STATE_RUNNING

from comparison.readers import _client_row
from locust_plugin.client_stats import ClientSnapshot
from locust_plugin.mitigations_board import MitigationsBoard
from locust_plugin.worker_watch import mark_lost
from mitigations.criticality import CRITICALITIES
from mitigations.csv_schema import ALL_WORKERS

CLIENT = "HammerClient"
IN_FLIGHT = ("concurrent", "pending")
ENDED = ("ok", "server_errors", "unfinished")


@dataclass
class WorkerModel:
    """One worker's cumulative counts, as its ledger keeps them."""

    name: str
    launched: int = 0
    ok: int = 0
    server_errors: int = 0
    shed: int = 0
    unfinished: int = 0
    pending: int = 0
    concurrent: int = 0
    clock: float = 0.0

    def work(self, launch: int, finish: int, kind: int) -> None:
        self.launched += launch
        self.concurrent += launch
        done = min(finish, self.concurrent)
        self.concurrent -= done
        if kind == 3:
            self.pending += done
        else:
            setattr(self, ENDED[kind], getattr(self, ENDED[kind]) + done)
        if kind == 2 and self.pending:  # a deferred call ends: expired, a shed
            self.pending -= 1
            self.shed += 1

    def snapshot(self) -> ClientSnapshot:
        self.clock += 1.0
        return ClientSnapshot(
            client=CLIENT, at=self.clock, started_at=0.0, launched=self.launched, ok=self.ok,
            server_errors=self.server_errors, unfinished=self.unfinished, pending=self.pending,
            concurrent=self.concurrent, shed_by_cause={"throttle": self.shed} if self.shed else {},
        )  # fmt: skip


def row_identity(row) -> int:
    return (
        row.ok_total + row.server_errors_total + row.shed_total + row.unfinished_total + row.pending
        + row.concurrent + row.lost_with_worker
    )  # fmt: skip


STEP = st.tuples(
    st.sampled_from(("work", "report", "report-cut", "lose")),
    st.integers(0, 2),  # which worker
    st.integers(0, 6),  # launched
    st.integers(0, 6),  # finished
    st.integers(0, 3),  # how they ended: ok, server error, unfinished, deferred
)


@settings(max_examples=150, deadline=None)
@given(workers=st.integers(2, 3), steps=st.lists(STEP, min_size=1, max_size=40))
def test_identity_holds_through_lost_with_worker_and_nothing_counts_twice(workers, steps):
    board = MitigationsBoard()
    board.begin_test()
    models = [WorkerModel(f"w{i}") for i in range(workers)]
    delivered: dict[str, ClientSnapshot] = {}  # what the master last received from each worker
    lost: set[str] = set()
    for when, (action, index, launch, finish, kind) in enumerate(steps):
        model = models[index % workers]
        if action == "work":
            model.work(launch, finish, kind)
        elif action == "report":
            snap = model.snapshot()
            board.update(model.name, 1, [snap])
            delivered[model.name] = snap
            lost.discard(model.name)  # it is back, whatever the master thought
        elif action == "report-cut":
            model.snapshot()  # sent while the link was down: never arrives
        elif action == "lose":
            calls = board.lose(model.name, float(when))
            if model.name in delivered and model.name not in lost:
                last = delivered[model.name]
                assert calls == last.concurrent + last.pending
                lost.add(model.name)
            else:
                assert calls is None
        rows = board.rows(1000.0 + when, float(when))
        per_worker = {row.worker: row for row in rows if row.worker != ALL_WORKERS}
        assert set(per_worker) == set(delivered)
        for name, row in per_worker.items():
            last = delivered[name]
            assert row.launched_total == last.launched  # its latest report, never a sum of reports
            assert row.launched_total == row_identity(row)
            if name in lost:
                assert row.lost_with_worker == last.concurrent + last.pending
                assert row.concurrent == row.pending == 0 and row.worker_lost_at_s is not None
            else:
                assert row.lost_with_worker == 0 and row.worker_lost_at_s is None
        merged = [row for row in rows if row.worker == ALL_WORKERS]
        if delivered:
            (total,) = merged
            assert total.launched_total == sum(snap.launched for snap in delivered.values())
            assert total.launched_total == row_identity(total)
            assert total.lost_with_worker == sum(per_worker[name].lost_with_worker for name in lost)
        assert set(board.lost) == lost


def test_a_worker_back_from_a_cut_replaces_its_numbers():
    board = MitigationsBoard()
    board.begin_test()
    before = WorkerModel("w0")
    before.work(10, 4, 0)
    board.update("w0", 1, [before.snapshot()])
    assert board.lose("w0", 5.0) == 6
    assert board.lose("w0", 6.0) is None  # already lost
    (row, total) = board.rows(1000.0, 5.0)
    assert (row.lost_with_worker, row.concurrent, row.worker_lost_at_s) == (6, 0, 5.0)
    assert (total.lost_with_worker, total.worker_lost_at_s) == (6, None)
    before.work(5, 15, 0)  # what it did while cut off, reported in one cumulative snapshot
    board.update("w0", 1, [before.snapshot()])
    (row, total) = board.rows(1001.0, 6.0)
    assert (row.launched_total, row.ok_total, row.lost_with_worker, row.worker_lost_at_s) == (15, 15, 0, None)
    assert total.launched_total == 15  # not 10 + 15
    assert row.csv_row()["worker_lost_at_s"] == "" and row.csv_row()["lost_with_worker"] == "0"


class Master:
    """What `mark_lost` reads of the master's `Monitor`: a runner with worker nodes, a board, a start."""

    def __init__(self, states: dict[str, str]) -> None:
        nodes = [SimpleNamespace(id=worker, state=state) for worker, state in states.items()]
        self.environment = SimpleNamespace(runner=SimpleNamespace(clients=SimpleNamespace(all=nodes)))
        self.board = MitigationsBoard()
        self.started_at = 100.0
        self.heard: dict[str, float] = {}
        self.writes = 0

    def write_soon(self) -> None:
        self.writes += 1


def test_the_watch_marks_only_workers_locust_calls_missing(caplog):
    master = Master({"w0": STATE_RUNNING, "w1": STATE_MISSING, "w2": STATE_MISSING})
    model = WorkerModel("x")
    model.work(3, 1, 0)
    for worker in ("w0", "w1"):  # w2 went missing before it ever reported: nothing of it to keep
        master.board.update(worker, 1, [model.snapshot()])
    master.heard = {"w0": 50.0, "w1": 50.0}
    # Locust still says missing while it re-dispatches users to a worker back from a cut: a report
    # within QUIET_S says it is back
    assert mark_lost(master, wall=lambda: 106.0, clock=lambda: 51.5) == []
    assert mark_lost(master, wall=lambda: 107.25, clock=lambda: 52.5) == ["w1"]
    assert master.board.lost == {"w1": 7.25} and master.writes == 1
    assert "worker w1 lost 7.2 s into the test" in caplog.text and "its 2 calls in flight" in caplog.text
    assert mark_lost(master, wall=lambda: 108.0, clock=lambda: 53.0) == []  # said once


def test_breaker_transitions_are_moved_onto_the_masters_clock():
    """A worker 100 s ahead: its transitions are shown at the master's time of the event (to within the
    quickest delivery), and a report that sat in a cut link does not move them further."""
    board = MitigationsBoard()
    board.begin_test()

    def snap(at: float, *transitions: float) -> ClientSnapshot:
        flips = tuple((t, "closed", "open") for t in transitions)
        return ClientSnapshot(client=CLIENT, at=at, started_at=0.0, recent_transitions=flips)

    board.update("w0", 1, [snap(1100.0, 1099.5)], received_at=1000.2)  # 0.2 s on the way
    board.update("w0", 1, [snap(1101.0, 1099.5, 1100.8)], received_at=1001.1)  # quicker: 0.1 s
    board.update("w0", 1, [snap(1102.0, 1099.5, 1100.8, 1101.9)], received_at=1009.0)  # held 7 s by a cut
    (row, _) = board.rows(1009.0, 9.0)
    assert [at for at, _, _ in row.recent_transitions] == [999.6, 1000.9, 1002.0]
    local = MitigationsBoard()  # one process: one clock, nothing moved
    local.begin_test()
    local.update("local", 1, [snap(1100.0, 1099.5)])
    (row, _) = local.rows(1100.0, 1.0)
    assert row.recent_transitions == ((1099.5, "closed", "open"),)


# -- lost workers x the criticality split ------------------------------------------------------------------


@dataclass
class SplitWorker:
    """A worker with `--criticality-mix`: one model per criticality; the totals are their sum."""

    name: str

    def __post_init__(self) -> None:
        self.parts = {label: WorkerModel(label) for label in CRITICALITIES}
        self.clock = 0.0

    def snapshot(self) -> ClientSnapshot:
        self.clock += 1.0
        parts = self.parts.values()
        total = {name: sum(getattr(p, name) for p in parts) for name in (*ENDED, *IN_FLIGHT, "launched")}
        shed = sum(p.shed for p in parts)
        split = {
            label: {"launched": p.launched, "ok": p.ok, "server_errors": p.server_errors, "shed": p.shed,
                    "unfinished": p.unfinished, "pending": p.pending, "slo_ok": 0, "latency_hdr": ""}
            for label, p in self.parts.items()
        }  # fmt: skip
        return ClientSnapshot(
            client=CLIENT, at=self.clock, started_at=0.0, shed_by_cause={"throttle": shed} if shed else {},
            criticality=split, **total,
        )  # fmt: skip

    def drain(self) -> None:
        """The end of the test on a worker that is still there: what is left counts unfinished."""
        for part in self.parts.values():
            part.unfinished += part.concurrent + part.pending
            part.concurrent = part.pending = 0


SPLIT_STEP = st.tuples(
    st.sampled_from(("work", "report", "report-cut", "lose")),
    st.integers(0, 2),  # which worker
    st.integers(0, 6),  # launched
    st.integers(0, 6),  # finished
    st.integers(0, 3),  # how they ended: ok, server error, unfinished, deferred
    st.sampled_from(CRITICALITIES),
)


def split_identity(row, label: str) -> tuple[int, int]:
    """(launched, where each went) of one criticality, from the CSV cells the summary reads."""
    cells = row.csv_row()
    ends = ("ok_total", "server_errors_total", "shed_total", "unfinished_total", "lost_with_worker")
    return int(cells[f"{label}_launched_total"]), sum(int(cells.get(f"{label}_{end}") or 0) for end in ends)


@settings(max_examples=100, deadline=None)
@given(workers=st.integers(1, 3), steps=st.lists(SPLIT_STEP, min_size=1, max_size=30))
def test_after_the_drain_each_criticality_keeps_its_identity_through_a_lost_worker(workers, steps):
    """Seam lost workers x criticality: the docs promise, after the drain, X_launched = X_ok +
    X_server_errors + X_shed + X_unfinished (+ what a lost worker took with it) for each criticality,
    on every worker's row and the `all` row, as the totals keep theirs through `lost_with_worker`."""
    board = MitigationsBoard()
    board.begin_test()
    models = [SplitWorker(f"w{i}") for i in range(workers)]
    for when, (action, index, launch, finish, kind, label) in enumerate(steps):
        model = models[index % workers]
        if action == "work":
            model.parts[label].work(launch, finish, kind)
        elif action == "report":
            board.update(model.name, 1, [model.snapshot()])
        elif action == "report-cut":
            model.snapshot()
        else:
            board.lose(model.name, float(when))
    for model in models:  # the drain: the workers still there send their last report
        if model.name not in board.lost:
            model.drain()
            board.update(model.name, 1, [model.snapshot()])
    for row in board.rows(2000.0, 100.0):
        assert row.launched_total == row_identity(row)
        read = _client_row(row.csv_row())  # as the summary reads it back from the CSV
        assert read.launched_total == row_identity(read) and read.lost_with_worker == row.lost_with_worker
        for label in CRITICALITIES:
            launched, ended = split_identity(row, label)
            assert launched == ended, (row.worker, label, row.criticality, row.lost_with_worker)
