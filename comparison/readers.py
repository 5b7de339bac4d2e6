"""Readers for the files one class's Locust run leaves: Locust's own CSVs and the Hammerlab sampler's.

Locust (`--csv PREFIX`): PREFIX_stats.csv, PREFIX_failures.csv (and _stats_history, _exceptions).
Sampler (`locust_plugin.server_sampler`, `locust_plugin.mitigations_board`): PREFIX_server.csv and
PREFIX_mitigations.csv, whose columns are a contract defined once in `mitigations.csv_schema`. `ServerRow`
and `ClientRow` name the columns they read by those names, and each field's type says how its cell is
parsed, so a reader and the writer cannot drift apart (tests/test_csv_schema.py).

Every reader takes a missing file as "no rows", so a run whose sampler found no Hammerlab target still
gets a summary; the caller decides whether that is worth a note.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from mitigations.csv_schema import ALL_WORKERS
from mitigations.csv_schema import SHED_REQUEST_TYPE as SHED_TYPE
from mitigations.csv_schema import UNFINISHED_REQUEST_TYPE as UNFINISHED_TYPE

_EXCEPTION_MESSAGE = re.compile(r"^\w+\('(.*)'\)$")
_SHED_CAUSE = re.compile(r"\[([^\]]+)\]\s*$")


def _rows(path: Path) -> Iterator[dict[str, str]]:
    if not path.exists():
        return
    with path.open(newline="", encoding="utf-8") as handle:
        yield from csv.DictReader(handle)


def _float(text: str | None) -> float | None:
    if text is None or text.strip() in ("", "N/A"):
        return None
    return float(text)


def _int(text: str | None) -> int:
    value = _float(text)
    return 0 if value is None else int(value)


@dataclass(frozen=True)
class StatsRow:
    """One row of Locust's PREFIX_stats.csv."""

    type: str
    name: str
    count: int
    failures: int
    rps: float
    p50: float | None
    p95: float | None
    p99: float | None

    @property
    def is_aggregate(self) -> bool:
        return self.name == "Aggregated" and not self.type

    @property
    def is_shed(self) -> bool:
        return self.type == SHED_TYPE

    @property
    def is_unfinished(self) -> bool:
        """Calls still in flight when the drain ran out: logical calls with no answer, not wire attempts."""
        return self.type == UNFINISHED_TYPE

    @property
    def is_wire(self) -> bool:
        return not self.is_aggregate and not self.is_shed and not self.is_unfinished

    @property
    def shed_cause(self) -> str:
        found = _SHED_CAUSE.search(self.name)
        return found.group(1) if found else self.name


def read_stats(path: Path) -> list[StatsRow]:
    return [
        StatsRow(
            type=row["Type"],
            name=row["Name"],
            count=_int(row["Request Count"]),
            failures=_int(row["Failure Count"]),
            rps=_float(row["Requests/s"]) or 0.0,
            p50=_float(row.get("50%")),
            p95=_float(row.get("95%")),
            p99=_float(row.get("99%")),
        )
        for row in _rows(path)
    ]


@dataclass(frozen=True)
class FailureRow:
    """One row of PREFIX_failures.csv: Locust groups by method, name and repr(exception)."""

    method: str
    name: str
    error: str
    occurrences: int

    @property
    def kind(self) -> str:
        """`ConnectTimeout('connect-timeout')` -> `connect-timeout`: the stable message is the kind."""
        found = _EXCEPTION_MESSAGE.match(self.error.strip())
        return found.group(1) if found else self.error.strip()


def read_failures(path: Path) -> list[FailureRow]:
    return [
        FailureRow(row["Method"], row["Name"], row["Error"], _int(row["Occurrences"])) for row in _rows(path)
    ]


@dataclass(frozen=True)
class ServerRow:
    """One sample of the target's /stats (PREFIX_server.csv; fields named as `SERVER_COLUMNS`). From a
    Prometheus endpoint (`--server-metrics`) a column nobody mapped is empty: None here."""

    timestamp: float
    elapsed_s: float
    lag_ms: float | None
    in_flight: int | None
    sockets: int | None
    completed_total: int | None
    errors_total: int | None
    faults: str
    requests_total: int | None = 0
    peak_lag_ms: float | None = None  # the server's own peaks since start or reset; None if not reported
    peak_in_flight: int | None = None
    peak_sockets: int | None = None
    work_cpu_ms_total: float | None = None  # CPU of the CPU-bound part, and the part wasted (None: older)
    wasted_cpu_ms_total: float | None = None


def _optional_int(text: str | None) -> int | None:
    value = _float(text)
    return None if value is None else int(value)


# How a cell is parsed, by the type of the field that holds it: a plain number must be there, an
# optional one may be empty (None), a count read as empty is 0, text read as empty is "".
_PARSERS: dict[str, Callable[[str | None], Any]] = {
    "float": lambda text: float(text or ""),
    "float | None": _float,
    "int": _int,
    "int | None": _optional_int,
    "str": lambda text: text or "",
}
Row = TypeVar("Row")


def _schema_row(cls: type[Row], row: Mapping[str, str]) -> Row:
    """One CSV row as `cls`, each field from the column of its name."""
    return cls(**{f.name: _PARSERS[str(f.type)](row.get(f.name)) for f in fields(cls)})  # type: ignore[arg-type]


def read_server(path: Path) -> list[ServerRow]:
    return [_schema_row(ServerRow, row) for row in _rows(path)]


@dataclass(frozen=True)
class ClientRow:
    """One client class's summed (`worker=all`) sample from PREFIX_mitigations.csv (fields named as
    `MITIGATION_COLUMNS`)."""

    timestamp: float
    elapsed_s: float
    concurrent: int
    max_concurrent: int
    launched_total: int
    wire_total: int
    wire_failures_total: int
    shed_total: int
    ok_total: int = 0
    server_errors_total: int = 0
    server_error_kinds: str = ""
    unfinished_total: int = 0
    pending: int = 0  # calls Defer keeps for later at this sample (0 without Defer, and after the drain)
    skipped_total: int = 0
    slo_ms: float | None = None
    slo_ok_total: int = 0
    shed_by_cause: str = ""
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    max_ms: float | None = None
    deferred_total: int | None = None  # None: the class has no Defer
    replayed_total: int | None = None
    expired_total: int | None = None
    defer_queue_depth: int | None = None
    defer_in_doubt_total: int | None = None  # rows set aside, never sent (docs/defer.md)
    defer_bad_rows_total: int | None = None
    kept_total: int | None = None  # of unfinished_total: still queued on disk at the end; None without Defer
    limit: float | None = None  # the adaptive limit (in `all` rows: the sum); None without one
    critical_launched_total: int | None = None  # --criticality-mix (docs/criticality.md); None without
    critical_slo_ok_total: int | None = None
    critical_p99_ms: float | None = None
    sheddable_launched_total: int | None = None
    sheddable_slo_ok_total: int | None = None
    sheddable_p99_ms: float | None = None

    @property
    def good_total(self) -> int:
        """Attempts answered 2xx/3xx: on the wire and not failed."""
        return self.wire_total - self.wire_failures_total


def _client_row(row: dict[str, str]) -> ClientRow:
    return _schema_row(ClientRow, row)


def read_client(path: Path, client: str) -> list[ClientRow]:
    return [
        _client_row(row) for row in _rows(path) if row["worker"] == ALL_WORKERS and row["client"] == client
    ]


def read_instances(path: Path, client: str) -> dict[str, list[ClientRow]]:
    """One client class's rows per process (`local`, or each Locust worker), the `all` sums left out:
    in a distributed run, every worker is one client instance."""
    found: dict[str, list[ClientRow]] = {}
    for row in _rows(path):
        if row["worker"] != ALL_WORKERS and row["client"] == client:
            found.setdefault(row["worker"], []).append(_client_row(row))
    return found


@dataclass(frozen=True)
class ClassFiles:
    """Where one class's files are: everything shares the prefix `<run dir>/<ClassName>`."""

    prefix: Path

    def path(self, suffix: str) -> Path:
        return self.prefix.with_name(self.prefix.name + suffix)

    @property
    def stats(self) -> Path:
        return self.path("_stats.csv")

    @property
    def history(self) -> Path:
        return self.path("_stats_history.csv")

    @property
    def failures(self) -> Path:
        return self.path("_failures.csv")

    @property
    def exceptions(self) -> Path:
        return self.path("_exceptions.csv")

    @property
    def html(self) -> Path:
        return self.path(".html")

    @property
    def server(self) -> Path:
        return self.path("_server.csv")

    @property
    def mitigations(self) -> Path:
        return self.path("_mitigations.csv")

    @property
    def locust_log(self) -> Path:
        return self.path("_locust.log")

    @property
    def target_log(self) -> Path:
        return self.path("_target.log")

    def locust_files(self) -> list[Path]:
        return [self.stats, self.history, self.failures, self.exceptions, self.html]

    def sampler_files(self) -> list[Path]:
        return [self.server, self.mitigations]
