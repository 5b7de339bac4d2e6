"""The server columns a Prometheus series may fill, and how a user names one: `COLUMN=SERIES`.

Plain Python shared by the Locust plugin (which scrapes, `locust_plugin/server_metrics.py`) and the
comparison runner (which checks the options before anything runs and passes them on). A SERIES is a
sample name as the exposition writes it, optionally `{label="value",...}` (every sample with those labels,
summed) and `*N` or `/N` to change its unit:

    in_flight=http_requests_in_flight
    lag_ms=nodejs_eventloop_lag_seconds*1000
    errors_per_s=http_requests_total{code="500"}

`HAMMERLAB_MAPPING` is the mapping of Hammerlab's own target_server `/metrics`, used when none is given.
The URL is absolute (`http://host:port/metrics`) or a path on the run's host (`/metrics`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

RATED_TOTALS = ("completed_total", "rejected_total", "errors_total")

GAUGE_COLUMNS = ("lag_ms", "in_flight", "concurrent", "sockets")
TOTAL_COLUMNS = ("requests_total", *RATED_TOTALS)
RATE_COLUMNS = tuple(name.replace("_total", "_per_s") for name in RATED_TOTALS)
COLUMNS = (*GAUGE_COLUMNS, *TOTAL_COLUMNS, *RATE_COLUMNS)
HAMMERLAB_MAPPING = (
    "lag_ms=target_event_loop_lag_seconds*1000",
    "in_flight=target_in_flight",
    "concurrent=target_concurrent_tasks",
    "sockets=target_sockets",
    "requests_total=target_requests_total",
    "completed_total=target_completed_total",
    "rejected_total=target_rejected_total",
    "errors_total=target_errors_total",
)

_SERIES = re.compile(
    r"(?P<column>[a-z_]+)=(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)(?:\{(?P<labels>[^{}]*)\})?"
    r"(?:(?P<op>[*/])(?P<factor>[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?))?",
    re.ASCII,
)
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"', re.ASCII)
MIN_FACTOR, MAX_FACTOR = 1e-12, 1e12  # seconds to ms is 1e3; no unit change needs more than 1e12
EXAMPLE = "e.g. in_flight=http_requests_in_flight or lag_ms=nodejs_eventloop_lag_seconds*1000"


@dataclass(frozen=True)
class SeriesMap:
    """One `COLUMN=NAME{labels}*FACTOR`: which samples fill which server column, scaled how."""

    column: str
    name: str
    labels: tuple[tuple[str, str], ...] = ()
    factor: float = 1.0

    @property
    def text(self) -> str:
        labels = ",".join(f'{k}="{v}"' for k, v in self.labels)
        scale = "" if self.factor == 1 else f"*{self.factor:g}"
        return f"{self.name}{{{labels}}}{scale}" if labels else f"{self.name}{scale}"

    @classmethod
    def parse(cls, text: object) -> SeriesMap:
        """Raises ValueError with one line naming the value and what is allowed."""
        raw = str(text)
        found = _SERIES.fullmatch(raw.replace(" ", ""))
        if found is None:
            raise ValueError(f"--server-metric {raw!r} is not COLUMN=SERIES[*N or /N], {EXAMPLE}")
        column = found["column"]
        if column not in COLUMNS:
            raise ValueError(
                f"--server-metric {raw!r}: {column!r} is not a server column; one of {', '.join(COLUMNS)}"
            )
        labels: list[tuple[str, str]] = []
        if found["labels"]:
            parts = [part for part in _split_labels(found["labels"]) if part]
            for part in parts:
                label = _LABEL.fullmatch(part)
                if label is None:
                    raise ValueError(
                        f'--server-metric {raw!r}: {part!r} is not a label matcher like code="200"'
                    )
                labels.append((label[1], label[2].replace('\\"', '"').replace("\\\\", "\\")))
        factor = scale_factor(raw, found["op"], found["factor"]) if found["factor"] else 1.0
        return cls(column, found["name"], tuple(sorted(labels)), factor)


def scale_factor(raw: str, op: str, text: str) -> float:
    """`*N` or `/N` as a multiplier from MIN_FACTOR to MAX_FACTOR: finite and non-zero, so that a sample
    (bounded by the scraper) times the factor stays a finite float (`*1e308` overflowed mid-run, `/1e-320`
    was an infinite factor). Raises ValueError with one line."""
    number = float(text) if len(text) <= 40 else math.inf
    factor = (number if op == "*" else 1 / number) if math.isfinite(number) and number > 0 else 0.0
    if not MIN_FACTOR <= factor <= MAX_FACTOR:
        raise ValueError(
            f"--server-metric {raw!r}: the factor must be from {MIN_FACTOR:g} to {MAX_FACTOR:g} "
            f"(e.g. *1000 or /1000)"
        )
    return factor


def _split_labels(text: str) -> list[str]:
    """`a="x,y",b="z"` -> ['a="x,y"', 'b="z"']: commas inside quotes stay."""
    parts, current, quoted, escaped = [], "", False, False
    for char in text:
        if char == "," and not quoted:
            parts.append(current)
            current = ""
            continue
        current += char
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
    parts.append(current)
    return parts


def parse_mapping(texts: Iterable[object] | None) -> tuple[SeriesMap, ...]:
    """The user's mapping, or Hammerlab's when none is given. Raises ValueError (one line)."""
    given = [SeriesMap.parse(text) for text in (texts or ())]
    chosen = given or [SeriesMap.parse(text) for text in HAMMERLAB_MAPPING]
    seen: set[str] = set()
    for item in chosen:
        if item.column in seen:
            raise ValueError(f"--server-metric: the column {item.column!r} is mapped twice")
        seen.add(item.column)
    return tuple(chosen)


def check_url(text: object) -> str:
    """An http(s) URL with a host and a valid port (no user name, printable ASCII), or a path on the run's
    host. Raises ValueError (one line)."""
    url = str(text).strip()
    problem = url_problem(url)
    if problem:
        raise ValueError(
            f"--server-metrics {text!r} is not an http:// or https:// URL like http://127.0.0.1:9100/metrics "
            f"or a path on the host like /metrics ({problem})"
        )
    return url


def url_problem(url: str) -> str | None:
    """Why `url` is not a scrape endpoint, or None."""
    if not url or any(not (" " < c < "\x7f") for c in url):
        return "it must be printable ASCII without spaces"
    if url.startswith("/"):
        return "// names another host" if url.startswith("//") else None
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError past 65535 or below 0
    except ValueError:
        return "the port must be from 1 to 65535"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "no http(s) scheme and host"
    if "@" in parts.netloc:
        return "no user name or password"
    if port == 0:
        return "the port must be from 1 to 65535"
    return None


def resolve_url(url: str, host: str) -> str:
    """`/metrics` on `http://127.0.0.1:3000` -> `http://127.0.0.1:3000/metrics`; a full URL stays."""
    return host.rstrip("/") + url if url.startswith("/") else url
