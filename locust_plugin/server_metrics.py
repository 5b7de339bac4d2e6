"""The server columns from any Prometheus endpoint: `--server-metrics URL`, `--server-metric COLUMN=SERIES`.

A Hammerlab target tells the sampler its state through `/stats` and its status series (server_sampler).
Any other service can tell it through the Prometheus text format most of them already expose: every
sample interval the sampler GETs the URL, parses the text with `prometheus_client`'s parser (never by
hand), and maps named series onto the columns of PREFIX_server.csv (the mapping's syntax and Hammerlab's
default mapping are in `mitigations/metrics_map.py`).

Gauges are read as they are. Counters (and the `_count`, `_sum` and `_bucket` samples of histograms and
summaries) become per-second rates over the interval since the previous scrape, except on the `*_total`
columns, which hold totals: there the counter is kept as it is and its rate fills the matching `*_per_s`
column, as for Hammerlab's /stats. A counter that went down restarted: its rate counts from zero.
Columns nobody mapped stay empty, in the CSV, in the Target server tab and in the report.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from locust_plugin.server_sample import RATED_TOTALS, ServerSample
from mitigations.checked_url import CheckedURL
from mitigations.metrics_map import COLUMNS, TOTAL_COLUMNS, SeriesMap, check_url, parse_mapping, resolve_url
from mitigations.outbound import fetch

log = logging.getLogger("hammerlab")

COUNTER_TYPES = ("counter",)
COUNTER_SUFFIXES = ("_count", "_sum", "_bucket", "_total", "_created")
MAX_BODY_BYTES = 8 * 1024 * 1024
ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"  # the text format, not OpenMetrics or protobuf


# -- one scrape ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scraped:
    """One sample of the exposition: its value, and whether it only ever grows (a counter's)."""

    labels: Mapping[str, str]
    value: float
    counter: bool


def read_exposition(text: str) -> dict[str, list[Scraped]]:
    """Samples by name, parsed by prometheus_client. Raises ValueError on text that is not the format."""
    found: dict[str, list[Scraped]] = {}
    for family in text_string_to_metric_families(text):
        growing = family.type in COUNTER_TYPES or family.type in ("histogram", "summary")
        for sample in family.samples:
            counter = growing and (family.type in COUNTER_TYPES or sample.name.endswith(COUNTER_SUFFIXES))
            found.setdefault(sample.name, []).append(Scraped(sample.labels, float(sample.value), counter))
    return found


def pick(series: SeriesMap, found: Mapping[str, list[Scraped]]) -> tuple[float, bool] | None:
    """The sum of the samples the map names (value x factor) and whether they are counters; None if none."""
    wanted = dict(series.labels)
    chosen = [
        s
        for s in found.get(series.name, ())
        if math.isfinite(s.value) and all(s.labels.get(k) == v for k, v in wanted.items())
    ]
    if not chosen:
        return None
    total = math.fsum(s.value for s in chosen) * series.factor
    if not math.isfinite(total):  # samples near 1e308 times a factor: no column can show it
        return None
    return total, any(s.counter for s in chosen)


class MetricsSource:
    """Turns successive scrapes of one endpoint into ServerSamples: gauges as read, counters as rates."""

    def __init__(
        self,
        url: str,
        mapping: Sequence[SeriesMap],
        fetch: Callable[[CheckedURL, float], tuple[int, str]] | None = None,
    ) -> None:
        self.given = url  # as the user wrote it: a URL, or a path on the run's host
        self.url = url
        self.mapping = tuple(mapping)
        self.fetch = fetch or fetch_text
        self.previous: dict[str, float] = {}  # column -> its last raw counter reading
        self.previous_at: float | None = None
        self.said_missing: set[str] = set()

    @property
    def columns(self) -> dict[str, str]:
        """Mapped column -> the series text, for the Target server tab's labels."""
        return {item.column: item.text for item in self.mapping}

    def restart(self, host: str) -> bool:
        """A new test on `host`: forget the last readings. False when the URL is a path and no host."""
        self.url = resolve_url(self.given, host)
        self.previous.clear()
        self.previous_at = None
        return not self.url.startswith("/")

    def sample(self, text: str, *, received_at: float, started_at: float) -> ServerSample:
        """One scrape as a sample. Raises ValueError when the text is not the Prometheus format."""
        found = read_exposition(text)
        window = None if self.previous_at is None else received_at - self.previous_at
        values: dict[str, float | None] = dict.fromkeys(COLUMNS)
        readings: dict[str, float] = {}
        for item in self.mapping:
            picked = pick(item, found)
            if picked is None:
                if item.name not in self.said_missing:
                    self.said_missing.add(item.name)
                    log.warning(
                        "hammerlab: %s has no sample %s; %s stays empty", self.url, item.text, item.column
                    )
                continue
            value, counter = picked
            if not counter or item.column in TOTAL_COLUMNS:
                values[item.column] = value
            else:
                values[item.column] = self._rate(item.column, value, window)
            readings[item.column] = value
        for total in RATED_TOTALS:  # a mapped total gives its rate, unless that rate was mapped itself
            rate = total.replace("_total", "_per_s")
            if total in readings and not any(item.column == rate for item in self.mapping):
                values[rate] = self._rate(total, readings[total], window)
        self.previous.update(readings)
        self.previous_at = received_at
        return _server_sample(values, received_at, started_at)

    def _rate(self, column: str, value: float, window: float | None) -> float | None:
        before = self.previous.get(column)
        if before is None or window is None or window <= 0:
            return None
        return (value - before if value >= before else value) / window  # went down: it restarted


def _whole(value: float | None) -> int | None:
    return None if value is None else round(value)


def _server_sample(values: Mapping[str, float | None], received_at: float, started_at: float) -> ServerSample:
    return ServerSample(
        timestamp=round(received_at, 3),
        elapsed_s=round(max(0.0, received_at - started_at), 3),
        server_time=received_at,  # the text has no clock of the server's: the sampler's own
        since_reset_s=0.0,
        reset_count=0,
        lag_ms=values["lag_ms"],
        in_flight=_whole(values["in_flight"]),
        concurrent=_whole(values["concurrent"]),
        sockets=_whole(values["sockets"]),
        requests_total=_whole(values["requests_total"]),
        completed_total=_whole(values["completed_total"]),
        rejected_total=_whole(values["rejected_total"]),
        errors_total=_whole(values["errors_total"]),
        completed_per_s=values["completed_per_s"],
        rejected_per_s=values["rejected_per_s"],
        errors_per_s=values["errors_per_s"],
        faults=(),
        fault_details=(),
    )


def fetch_text(url: CheckedURL, timeout: float) -> tuple[int, str]:
    """GET the exposition on a fresh connection closed at once (like the /stats sampler): only to the
    checked addresses, no redirect, no proxy."""
    answer = fetch(url, headers={"Accept": ACCEPT}, timeout=timeout, limit=MAX_BODY_BYTES)
    charset = answer.headers.get("content-type", "").partition("charset=")[2].split(";")[0].strip()
    try:
        return answer.status, answer.body.decode(charset or "utf-8", errors="replace")
    except LookupError:
        return answer.status, answer.body.decode("utf-8", errors="replace")


def source_from_options(options: Any) -> MetricsSource | None:
    """`--server-metrics` and `--server-metric` as a source, or None. Raises ValueError (one line)."""
    url = getattr(options, "server_metrics", None)
    series = getattr(options, "server_metric", None) or ()
    if not url:
        if series:
            raise ValueError("--server-metric needs --server-metrics URL to read the series from")
        return None
    return MetricsSource(check_url(url), parse_mapping(series))
