"""`--latency-profile FILE`: make /doWork behave like an upstream you measured but may not hammer.

The seed's work model is two constants: every request waits TASK_DELAY (20 ms, a timer: the database,
another service) and then blocks the loop for SYNC_WORK (10 ms of CPU), so one process serves at most
1000 / SYNC_WORK requests a second. A profile replaces the constants with a measured distribution:

  - the latency of the request at low load, as a percentile table (`{"50": 40, "99": 128, ...}` in ms)
    or as a list of measured samples, in JSON or CSV;
  - the share of that latency that is CPU-bound (`cpu_share`, 0 to 1); the rest is waiting.

Each request draws a latency L from the distribution (the inverse of its CDF, linear between the table's
points), waits (1 - cpu_share) x L, then spins cpu_share x L: the seed's order. At low load /doWork
therefore answers with the profile's percentiles, and, as with the seed's constants, the CPU part
sets the capacity: about 1000 / (cpu_share x mean latency in ms) requests a second per process.

The quantiles come from a golden-ratio (Weyl) sequence started at a seeded random point, not from
independent random draws: any few hundred consecutive requests then cover the distribution evenly, so a
short run already shows the profile's p99 (independent draws would need tens of thousands of requests).

File formats (every latency in milliseconds):

  JSON  {"cpu_share": 0.25, "percentiles_ms": {"0": 8, "50": 40, "99": 128, "100": 250}}
        {"cpu_share": 0.25, "samples_ms": [31.2, 40.8, ...]}
  CSV   a header `percentile,latency_ms` and one row per percentile, or a header `latency_ms` and one
        row per sample. CSV has no cpu_share: give it with `--cpu-share` (which also overrides JSON's).

Percentiles run from 0 to 100, strictly increasing, with latencies that never decrease; below the first
and above the last the nearest end is used, so give 0 (the fastest) and 100 (the slowest) for a full curve.
"""

from __future__ import annotations

import bisect
import csv
import io
import itertools
import math
import os
import random
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from target_server.numbers import JSONProblem, parse_float, strict_json

MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_POINTS = 1_000_000
MAX_LATENCY_MS = 60_000.0  # as task_delay_ms
GOLDEN = (math.sqrt(5) - 1) / 2
WORK_OPTIONS = frozenset({"task_delay_ms", "sync_work_ms", "expansion"})
EXAMPLE = '{"cpu_share": 0.25, "percentiles_ms": {"0": 8, "50": 40, "99": 128, "100": 250}}'


class ProfileError(ValueError):
    """A profile that cannot be used; the message is one line naming the value and what is allowed."""


@dataclass(frozen=True)
class LatencyProfile:
    """A latency distribution as (quantile 0..1, latency ms) points, and the CPU-bound share of it."""

    points: tuple[tuple[float, float], ...]
    cpu_share: float
    source: str = ""

    def __post_init__(self) -> None:
        if not 1 <= len(self.points) <= MAX_POINTS:
            raise ProfileError(f"{self.source}: needs 1 to {MAX_POINTS:,} points, got {len(self.points)}")
        previous_q, previous_ms = -1.0, 0.0
        for q, ms in self.points:
            if not (math.isfinite(q) and 0 <= q <= 1) or q <= previous_q:
                raise ProfileError(
                    f"{self.source}: percentiles must rise strictly from 0 to 100, got {q * 100:g} "
                    f"after {previous_q * 100:g}"
                )
            if not (math.isfinite(ms) and 0 <= ms <= MAX_LATENCY_MS) or ms < previous_ms:
                raise ProfileError(
                    f"{self.source}: latencies must be from 0 to {MAX_LATENCY_MS:g} ms and never fall as the "
                    f"percentile rises, got {ms:g} ms at p{q * 100:g}"
                )
            previous_q, previous_ms = q, ms
        if isinstance(self.cpu_share, bool) or not (
            isinstance(self.cpu_share, int | float) and 0 <= self.cpu_share <= 1
        ):
            raise ProfileError(
                f"{self.source}: cpu_share must be a number from 0 to 1, got {self.cpu_share!r}"
            )

    def latency_ms(self, quantile: float) -> float:
        """The inverse CDF: the latency at `quantile` (0..1), linear between the points."""
        points = self.points
        i = bisect.bisect_left(points, (quantile, -math.inf))
        if i == 0:
            return points[0][1]
        if i == len(points):
            return points[-1][1]
        (q0, l0), (q1, l1) = points[i - 1], points[i]
        return l0 + (l1 - l0) * (quantile - q0) / (q1 - q0)

    def split(self, quantile: float) -> tuple[float, float]:
        """(wait ms, CPU ms) of a request drawn at `quantile`."""
        latency = self.latency_ms(quantile)
        work = latency * self.cpu_share
        return latency - work, work

    @property
    def mean_ms(self) -> float:
        """The mean latency: flat ends plus the trapezoids between the points."""
        points = self.points
        total = points[0][0] * points[0][1] + (1 - points[-1][0]) * points[-1][1]
        for (q0, l0), (q1, l1) in itertools.pairwise(points):
            total += (q1 - q0) * (l0 + l1) / 2
        return total

    @property
    def max_work_ms(self) -> float:
        return self.points[-1][1] * self.cpu_share

    @property
    def capacity_rps(self) -> float | None:
        """Requests a second one process can serve: 1000 / mean CPU ms (None when nothing is CPU-bound)."""
        cpu = self.mean_ms * self.cpu_share
        return 1000 / cpu if cpu > 0 else None

    def describe(self) -> str:
        """One line for the start-up log."""
        capacity = self.capacity_rps
        limit = "no CPU limit" if capacity is None else f"about {capacity:.0f} requests/s per process"
        return (
            f"latency profile {Path(self.source).name}: p50 {self.latency_ms(0.5):.1f} ms, "
            f"p99 {self.latency_ms(0.99):.1f} ms, mean {self.mean_ms:.1f} ms, "
            f"{self.cpu_share:.0%} CPU-bound: capacity {limit}"
        )


class QuantileSequence:
    """Quantiles for successive requests: frac(start + n x golden ratio), start drawn from `rng`."""

    def __init__(self, rng: random.Random) -> None:
        self.value = rng.random()

    def next(self) -> float:
        self.value = (self.value + GOLDEN) % 1.0
        return self.value


def profile_applies(query: Iterable[str], overrides: Iterable[str]) -> bool:
    """A request draws from the profile unless it sets the work itself (a query `task_delay_ms`,
    `sync_work_ms` or `expansion`) or /admin/config has (the capacity scenario halves the capacity so)."""
    return not any(name in WORK_OPTIONS for name in (*query, *overrides))


def load_profile(path: str, cpu_share: float | None = None) -> LatencyProfile:
    """Read a JSON or CSV profile (by its content: JSON starts with `{`). `cpu_share` overrides the file's.
    Raises ProfileError with one line."""
    data = read_profile_bytes(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ProfileError(f"{path!r} is not UTF-8 text") from None
    name = Path(path).name
    if not name:
        raise ProfileError(f"{path!r} is not a file")
    if text.lstrip().startswith("{"):
        points, share = _from_json(text, name)
    else:
        points, share = _from_csv(text, name), None
    share = cpu_share if cpu_share is not None else share
    if share is None:
        raise ProfileError(f"{name}: no cpu_share: put it in the JSON or pass --cpu-share (0 to 1)")
    try:
        return LatencyProfile(points, share, path)
    except ProfileError as error:
        raise ProfileError(str(error).replace(path, name, 1)) from None


def read_profile_bytes(path: str) -> bytes:
    """At most MAX_FILE_BYTES of a regular file. Opened without blocking and checked before reading, so a
    FIFO, a device or a folder is one line instead of a start-up that waits forever."""
    if "\x00" in path:
        raise ProfileError(f"{path!r} is not a file path (it contains a NUL)")
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise ProfileError(f"cannot read {path!r}: {error.strerror or error}") from None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise ProfileError(f"{path!r} is not a regular file (a FIFO, device or folder is not a profile)")
    with os.fdopen(descriptor, "rb") as handle:
        try:
            data = handle.read(MAX_FILE_BYTES + 1)
        except OSError as error:
            raise ProfileError(f"cannot read {path!r}: {error.strerror or error}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ProfileError(f"{path!r} is over {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    return data


def _number(value: Any, what: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProfileError(f"{name}: {what} must be a finite number, got {value!r}")
    return float(value)


def _from_json(text: str, name: str) -> tuple[tuple[tuple[float, float], ...], float | None]:
    try:
        body = strict_json(text)  # no repeated keys, NaN, 1e400 or deep nesting
    except JSONProblem as problem:
        raise ProfileError(f"{name}: {problem}; expected e.g. {EXAMPLE}") from None
    if not isinstance(body, dict):
        raise ProfileError(f"{name}: must be a JSON object like {EXAMPLE}")
    unknown = sorted(set(body) - {"cpu_share", "percentiles_ms", "samples_ms", "description"})
    if unknown:
        raise ProfileError(
            f"{name}: unknown key {unknown[0]!r}; allowed: cpu_share, percentiles_ms, samples_ms, description"
        )
    share = None if body.get("cpu_share") is None else _number(body["cpu_share"], "cpu_share", name)
    table, samples = body.get("percentiles_ms"), body.get("samples_ms")
    if (table is None) == (samples is None):
        raise ProfileError(f"{name}: give exactly one of percentiles_ms (an object) and samples_ms (a list)")
    if samples is not None:
        if not isinstance(samples, list):
            raise ProfileError(f"{name}: samples_ms must be a list of latencies in ms")
        return _from_samples([_number(v, "a sample", name) for v in samples], name), share
    if not isinstance(table, dict):
        raise ProfileError(f'{name}: percentiles_ms must be an object like {{"50": 40, "99": 128}}')
    points = []
    for key, value in table.items():
        percentile = _percentile(key, name)
        points.append((percentile / 100, _number(value, f"percentiles_ms[{key!r}]", name)))
    return _sorted_points(points, name), share


def _percentile(text: Any, name: str) -> float:
    try:
        value = parse_float(str(text))  # ASCII digits only, finite
    except ValueError:
        raise ProfileError(f"{name}: percentile {text!r} is not a number from 0 to 100") from None
    if not 0 <= value <= 100:
        raise ProfileError(f"{name}: percentile {text!r} is not a number from 0 to 100")
    return value


def _sorted_points(points: list[tuple[float, float]], name: str) -> tuple[tuple[float, float], ...]:
    points.sort()
    for (q0, _), (q1, _) in itertools.pairwise(points):
        if q0 == q1:
            raise ProfileError(f"{name}: percentile {q0 * 100:g} is given twice")
    return tuple(points)


def _from_samples(samples: list[float], name: str) -> tuple[tuple[float, float], ...]:
    """Sorted samples as an empirical quantile function: the i-th of n at quantile i / (n - 1)."""
    if not 2 <= len(samples) <= MAX_POINTS:
        raise ProfileError(f"{name}: needs 2 to {MAX_POINTS:,} samples, got {len(samples)}")
    samples.sort()
    last = len(samples) - 1
    # equal samples would repeat a latency at rising quantiles, which the inverse CDF takes as it is
    return tuple((i / last, value) for i, value in enumerate(samples))


def _from_csv(text: str, name: str) -> tuple[tuple[float, float], ...]:
    try:
        rows = [row for row in csv.reader(io.StringIO(text)) if row and any(cell.strip() for cell in row)]
    except csv.Error as error:  # a field over the csv module's limit (128 KiB), a NUL
        raise ProfileError(f"{name}: not a CSV profile ({error})") from None
    if not rows:
        raise ProfileError(
            f"{name}: empty; a CSV profile has a header `percentile,latency_ms` or `latency_ms`"
        )
    header = [cell.strip().lower() for cell in rows[0]]
    body = rows[1:]
    if header == ["percentile", "latency_ms"]:
        points = []
        for number, row in enumerate(body, start=2):
            if len(row) != 2:
                raise ProfileError(
                    f"{name}: line {number} needs 2 cells (percentile,latency_ms), got {len(row)}"
                )
            points.append((_percentile(row[0], name) / 100, _cell(row[1], number, name)))
        return _sorted_points(points, name)
    if header == ["latency_ms"]:
        return _from_samples([_cell(row[0], n, name) for n, row in enumerate(body, start=2)], name)
    raise ProfileError(
        f"{name}: the CSV header must be `percentile,latency_ms` or `latency_ms`, got {','.join(rows[0])!r}"
    )


def _cell(text: str, line: int, name: str) -> float:
    try:
        return parse_float(text)  # ASCII digits only, finite
    except ValueError:
        raise ProfileError(f"{name}: line {line}: {text!r} is not a latency in ms") from None
