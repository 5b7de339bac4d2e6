"""A CSV file written one row at a time and flushed after each, so an interrupted run keeps what it had."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TextIO


class CsvLog:
    """Rows in a fixed column order. Opening truncates the file and writes the header."""

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.path = path
        self.columns = tuple(columns)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO | None = path.open("w", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._file, fieldnames=self.columns, lineterminator="\n")
        self._writer.writeheader()
        self._file.flush()

    def write(self, rows: Iterable[Mapping[str, str]]) -> None:
        if self._file is None:
            return
        self._writer.writerows(rows)
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def render(columns: Sequence[str], rows: Iterable[Mapping[str, str]]) -> str:
    """The same format as a `CsvLog` file, as text (for the web UI's downloads)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
