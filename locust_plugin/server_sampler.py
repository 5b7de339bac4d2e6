"""The one sampler of the target's status: what the seed's server terminal showed, as numbers over time.

While a test runs, and only on the master (or the single local process), one greenlet asks the target
every `--server-sample-ms` (250 ms by default; 0 turns sampling off). It first asks `/stats`; when that
announces a `status_port` (a Hammerlab target started with `python -m target_server`), it reads the
target's own status series from there instead (`server_series`): one record per `--log-interval-ms`
of the target, recorded off its event loop and fetched in batches, so a melting server, which answers
`/stats` late or never, still leaves every sample. Otherwise (gunicorn, an older target, `--status-port
-1`) it samples `/stats` itself, one sample per answer. Each record or answer becomes
a `ServerSample`: the gauges as they were, plus per-interval rates worked out from the server's
monotonically increasing totals. A bounded history feeds the web UI's Target server tab; with
`--csv PREFIX` every sample is also appended (and flushed) to `PREFIX_server.csv`, so an interrupted
run keeps what it had.

`PREFIX_server.csv` is a contract (the comparison runner reads it instead of sampling itself). One row
per sample, these columns in this order:

  timestamp         unix seconds (3 decimals): from the series, when the server recorded the sample
                    (its clock mapped onto the sampler's); from /stats, when the answer arrived
  elapsed_s         seconds since the test started
  lag_ms            the server's event-loop lag (toobusy's measure)
  in_flight         /doWork requests inside the server
  concurrent        the seed's `concurrent`: tasks waiting on their timer
  sockets           connections open to the server, not counting the sampler's own
  requests_total    /doWork requests received, since the server's last reset
  completed_total   answered 200
  rejected_total    shed by the server with 503 "too busy"
  errors_total      failed by an injected fault
  completed_per_s   rates of the three totals over the interval since the previous sample;
  rejected_per_s    empty on the first sample of a test. A server reset (or restart) between two
  errors_per_s      samples counts from the reset, over the time since it
  faults            active fault kinds, sorted, joined by ';'; empty if none
  peak_lag_ms       the server's own highest lag, in_flight and sockets since it started or was last
  peak_in_flight    reset, as its /stats reports them. A melting server answers /stats late, so its
  peak_sockets      worst moments fall between samples; these keep them. peak_sockets subtracts the
                    sampler's connection like `sockets` (so it may be one low). Empty when the
                    target's /stats has no peaks

  server_time       the server's own wall-clock time of the sample (unix s, 3 decimals)
  server_seq        the record's number in the target's series (consecutive: a gap is a lost sample);
                    empty when sampled from /stats

  expired_total        answered 504 because the request's propagated deadline had passed (--drop-expired)
  work_cpu_ms_total    CPU ms of /doWork's CPU-bound part, and the part of it spent for clients that had
  wasted_cpu_ms_total  already given up (deadline passed when it finished, or connection closed)
  wasted_work_ratio    wasted / work CPU over the interval since the previous sample (0 to 1); empty on
                       the first sample of a test, when no work was done in the interval, or when the
                       target does not report it

The peak columns came after `faults`, the two server columns after them and the wasted-work columns
last, so readers of the older columns are unaffected.

When the host answers `/stats` with something that is not a Hammerlab target, the sampler says so once
and stops for that test; when the host cannot be reached it says so once and keeps trying.

With `--server-metrics URL` the sampler reads a Prometheus text endpoint instead, every interval, and the
columns are whatever `--server-metric` mapped (`server_metrics`); the others stay empty. `timestamp` and
`server_time` are then the sampler's clock when the scrape answered, and `server_seq` is empty.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import gevent

from locust_plugin.csv_log import CsvLog
from locust_plugin.server_series import MAX_PAGES, BadSeries, SeriesCursor, series_url, status_port_of
from locust_plugin.values import parse_whole
from mitigations.checked_url import CheckedURL, URLRefused, checked_url
from mitigations.outbound import fetch


class MetricsSource(Protocol):
    """A Prometheus endpoint read instead of /stats (`locust_plugin.server_metrics.MetricsSource`).
    A protocol, so this module needs nothing from that one, which builds on this one's samples."""

    given: str
    url: str
    fetch: Any

    def restart(self, base_url: str) -> bool: ...

    def sample(self, text: str, received_at: float, started_at: float) -> ServerSample: ...

log = logging.getLogger("hammerlab")

SERVER_COLUMNS = (
    "timestamp",
    "elapsed_s",
    "lag_ms",
    "in_flight",
    "concurrent",
    "sockets",
    "requests_total",
    "completed_total",
    "rejected_total",
    "errors_total",
    "completed_per_s",
    "rejected_per_s",
    "errors_per_s",
    "faults",
    "peak_lag_ms",
    "peak_in_flight",
    "peak_sockets",
    "server_time",
    "server_seq",
    "expired_total",
    "work_cpu_ms_total",
    "wasted_cpu_ms_total",
    "wasted_work_ratio",
)
RATED_TOTALS = ("completed_total", "rejected_total", "errors_total")
REQUIRED_KEYS = ("time", "lag_ms", "in_flight", "concurrent", "sockets", "requests_total", *RATED_TOTALS)
HISTORY_SAMPLES = 7200  # an hour at 500 ms: the UI's download, never the CSV file, is bounded by this
FETCH_TIMEOUT_S = 3.0  # a melting server answers /stats late; a later sample is better than none
FINAL_FETCH_TIMEOUT_S = 1.0  # at the test's stop, one last read of the series, kept short
SERIES_FAILURES_BEFORE_ASKING_AGAIN = 3  # then ask /stats where the series is (a restarted target)
SAMPLER_OWN_SOCKETS = 1  # the server counts the connection that asks for /stats

Fetch = Callable[[CheckedURL, float], tuple[int, Any]]
"""(url, timeout) -> (HTTP status, parsed JSON body or None). Raises OSError-like errors when unreachable."""


class NotATarget(ValueError):
    """The host answered, but not with a Hammerlab target's /stats."""


@dataclass(frozen=True)
class SampleInterval:
    """A sampling period in milliseconds: 100 to 10,000, or 0 for no sampling at all."""

    ms: int = 250

    def __post_init__(self) -> None:
        if (
            isinstance(self.ms, bool)
            or not isinstance(self.ms, int)
            or not (self.ms == 0 or 100 <= self.ms <= 10_000)
        ):
            raise ValueError(
                "--server-sample-ms must be 0 (off) or a whole number of milliseconds from 100 to 10000, "
                f"got {self.ms!r}"
            )

    @property
    def off(self) -> bool:
        return self.ms == 0

    @property
    def seconds(self) -> float:
        return self.ms / 1000.0

    @classmethod
    def parse(cls, text: object) -> SampleInterval:
        try:
            value = parse_whole(text)  # plain ASCII digits: no 3_000, no full-width digits
        except ValueError:
            raise ValueError(
                f"--server-sample-ms must be a whole number of milliseconds in plain digits, got {text!r}"
            ) from None
        return cls(value)


@dataclass(frozen=True)
class ServerSample:
    """One answer from /stats, with rates over the interval since the previous one. A sample from a
    Prometheus endpoint has None wherever nothing was mapped."""

    timestamp: float
    elapsed_s: float
    server_time: float
    since_reset_s: float
    reset_count: int
    lag_ms: float | None
    in_flight: int | None
    concurrent: int | None
    sockets: int | None
    requests_total: int | None
    completed_total: int | None
    rejected_total: int | None
    errors_total: int | None
    completed_per_s: float | None
    rejected_per_s: float | None
    errors_per_s: float | None
    faults: tuple[str, ...]
    fault_details: tuple[str, ...]
    peak_lag_ms: float | None = None
    peak_in_flight: int | None = None
    peak_sockets: int | None = None
    server_seq: int | None = None
    expired_total: int | None = None
    work_cpu_ms_total: float | None = None
    wasted_cpu_ms_total: float | None = None
    wasted_work_ratio: float | None = None

    def csv_row(self) -> dict[str, str]:
        return {
            "timestamp": f"{self.timestamp:.3f}",
            "elapsed_s": f"{self.elapsed_s:.3f}",
            "lag_ms": "" if self.lag_ms is None else f"{self.lag_ms:.1f}",
            "in_flight": _optional(self.in_flight),
            "concurrent": _optional(self.concurrent),
            "sockets": _optional(self.sockets),
            "requests_total": _optional(self.requests_total),
            "completed_total": _optional(self.completed_total),
            "rejected_total": _optional(self.rejected_total),
            "errors_total": _optional(self.errors_total),
            "completed_per_s": _rate(self.completed_per_s),
            "rejected_per_s": _rate(self.rejected_per_s),
            "errors_per_s": _rate(self.errors_per_s),
            "faults": ";".join(self.faults),
            "peak_lag_ms": "" if self.peak_lag_ms is None else f"{self.peak_lag_ms:.1f}",
            "peak_in_flight": _optional(self.peak_in_flight),
            "peak_sockets": _optional(self.peak_sockets),
            "server_time": f"{self.server_time:.3f}",
            "server_seq": _optional(self.server_seq),
            "expired_total": _optional(self.expired_total),
            "work_cpu_ms_total": _fixed(self.work_cpu_ms_total, 1),
            "wasted_cpu_ms_total": _fixed(self.wasted_cpu_ms_total, 1),
            "wasted_work_ratio": _fixed(self.wasted_work_ratio, 3),
        }


def _rate(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _fixed(value: float | None, decimals: int) -> str:
    return "" if value is None else f"{value:.{decimals}f}"


def _optional(value: int | None) -> str:
    return "" if value is None else str(value)


def _peak(stats: Mapping[str, Any], name: str) -> float | None:
    value = stats.get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def check_stats(body: Any) -> Mapping[str, Any]:
    """The /stats body if it is a Hammerlab target's, else `NotATarget`."""
    if not isinstance(body, Mapping):
        raise NotATarget("the answer is not a JSON object")
    missing = [key for key in REQUIRED_KEYS if not isinstance(body.get(key), int | float)]
    if missing:
        raise NotATarget(f"the answer has no {', '.join(missing)}")
    return body


def was_reset(previous: ServerSample, stats: Mapping[str, Any]) -> bool:
    """True when the server's counters restarted between two samples (an /admin/reset or a restart)."""
    window = float(stats["time"]) - previous.server_time
    return (
        int(stats.get("reset_count", 0)) != previous.reset_count
        or float(stats.get("since_reset_s", window)) < window
        or any(int(stats[name]) < getattr(previous, name) for name in RATED_TOTALS)
    )


def interval_rate(
    before: int, after: int, window_s: float, reset: bool, since_reset_s: float
) -> float | None:
    """Events per second between two readings of a counter. After a reset the counter restarted from 0,
    `since_reset_s` ago, so the whole reading counts, over the part of the window since the reset."""
    if reset:
        before = 0
        window_s = min(window_s, since_reset_s) if since_reset_s > 0 else window_s
    if window_s <= 0:
        return None
    return max(0, after - before) / window_s


def make_sample(
    stats: Mapping[str, Any],
    previous: ServerSample | None,
    *,
    received_at: float,
    started_at: float,
    own_sockets: int = SAMPLER_OWN_SOCKETS,
) -> ServerSample:
    """A sample from one checked /stats body or series record. Rates need a previous sample of the same
    test. `own_sockets`: connections of the sampler's that the server counted (none on the status port)."""
    server_time = float(stats["time"])
    since_reset = float(stats.get("since_reset_s", 0.0))
    rates: dict[str, float | None] = dict.fromkeys(RATED_TOTALS)
    if previous is not None:
        reset = was_reset(previous, stats)
        window = server_time - previous.server_time
        for name in RATED_TOTALS:
            rates[name] = interval_rate(getattr(previous, name), int(stats[name]), window, reset, since_reset)
        wasted_ratio = interval_share(previous, stats, reset)
    else:
        wasted_ratio = None
    active = [fault for fault in stats.get("faults") or () if isinstance(fault, Mapping)]
    peak_in_flight = _peak(stats, "peak_in_flight")
    peak_sockets = _peak(stats, "peak_sockets")
    return ServerSample(
        timestamp=round(received_at, 3),
        elapsed_s=round(max(0.0, received_at - started_at), 3),
        server_time=server_time,
        since_reset_s=since_reset,
        reset_count=int(stats.get("reset_count", 0)),
        lag_ms=float(stats["lag_ms"]),
        in_flight=int(stats["in_flight"]),
        concurrent=int(stats["concurrent"]),
        sockets=max(0, int(stats["sockets"]) - own_sockets),
        requests_total=int(stats["requests_total"]),
        completed_total=int(stats["completed_total"]),
        rejected_total=int(stats["rejected_total"]),
        errors_total=int(stats["errors_total"]),
        completed_per_s=rates["completed_total"],
        rejected_per_s=rates["rejected_total"],
        errors_per_s=rates["errors_total"],
        faults=tuple(sorted({str(fault.get("kind")) for fault in active})),
        fault_details=tuple(describe_fault(fault) for fault in active),
        peak_lag_ms=_peak(stats, "peak_lag_ms"),
        peak_in_flight=None if peak_in_flight is None else int(peak_in_flight),
        peak_sockets=None if peak_sockets is None else max(0, int(peak_sockets) - own_sockets),
        server_seq=stats["seq"] if isinstance(stats.get("seq"), int) else None,
        expired_total=None if (expired := _peak(stats, "expired_total")) is None else int(expired),
        work_cpu_ms_total=_peak(stats, "work_cpu_ms_total"),
        wasted_cpu_ms_total=_peak(stats, "wasted_cpu_ms_total"),
        wasted_work_ratio=wasted_ratio,
    )


def interval_share(previous: ServerSample, stats: Mapping[str, Any], reset: bool) -> float | None:
    """Wasted CPU / work CPU between the previous sample and `stats` (from 0 after a reset). None when
    the target does not report them or did no CPU-bound work in the interval."""
    work, wasted = _peak(stats, "work_cpu_ms_total"), _peak(stats, "wasted_cpu_ms_total")
    if work is None or wasted is None:
        return None
    work_before = 0.0 if reset else previous.work_cpu_ms_total or 0.0
    wasted_before = 0.0 if reset else previous.wasted_cpu_ms_total or 0.0
    spent = work - work_before
    if spent <= 0:
        return None
    return min(1.0, max(0.0, (wasted - wasted_before) / spent))


def describe_fault(fault: Mapping[str, Any]) -> str:
    """`outage 7.5 s left`, `error 50% 12.0 s left`, `hang 20% until cleared`."""
    parts = [str(fault.get("kind"))]
    rate = fault.get("rate")
    if isinstance(rate, int | float) and rate < 1:
        parts.append(f"{rate * 100:.0f}%")
    remaining = fault.get("remaining_s")
    parts.append("until cleared" if remaining is None else f"{float(remaining):.1f} s left")
    return " ".join(parts)


def fetch_json(url: CheckedURL, timeout: float) -> tuple[int, Any]:
    """GET on a fresh connection that is closed at once, so the sampler never holds a socket between
    samples (PooledClient's socket cap is checked on the same server count). Only to the checked
    addresses; no redirect, no proxy."""
    answer = fetch(url, timeout=timeout)
    try:
        body = json.loads(answer.body)
    except ValueError:
        body = None
    return answer.status, body


class ServerSampler:
    """Samples one target between `start` and `stop`: its status series when it has one, else /stats on a
    fixed period. See the module doc."""

    def __init__(
        self,
        interval: SampleInterval,
        *,
        fetch: Fetch = fetch_json,
        history: int = HISTORY_SAMPLES,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.interval = interval
        self.fetch = fetch
        self.wall = wall
        self.history: deque[ServerSample] = deque(maxlen=history)
        self.csv: CsvLog | None = None
        self.base_url = ""
        self.allow_remote = False  # this process's own --allow-remote (the environment's counts too)
        self.status = "waiting for a test to start"
        self.available = True
        self.started_at = wall()
        self.series: SeriesCursor | None = None
        self.metrics: MetricsSource | None = None  # --server-metrics: a Prometheus endpoint instead
        self._greenlet: gevent.Greenlet | None = None
        self._said_unreachable = False
        self._said_missed = 0
        self._series_failures = 0

    @property
    def latest(self) -> ServerSample | None:
        return self.history[-1] if self.history else None

    @property
    def running(self) -> bool:
        return self._greenlet is not None and not self._greenlet.dead

    def open_csv(self, path: Path) -> None:
        if self.csv is None:
            self.csv = CsvLog(path, SERVER_COLUMNS)

    def start(self, base_url: str, started_at: float | None = None) -> None:
        """Forget the last test's samples and sample `base_url` until `stop`."""
        self.stop()
        self.base_url = base_url.rstrip("/")
        self.started_at = self.wall() if started_at is None else started_at
        self.history.clear()
        self.available = True
        self.series = None
        self._said_unreachable = False
        self._said_missed = 0
        self._series_failures = 0
        if self.interval.off:
            self.status = "off (--server-sample-ms 0)"
            return
        if self.metrics is not None:
            if not self.metrics.restart(self.base_url):
                self.status = f"no host to read {self.metrics.given} from"
                return
            self.status = f"sampling {self.metrics.url} (Prometheus) every {self.interval.ms} ms"
            self._greenlet = gevent.spawn(self._run)
            return
        if not self.base_url:
            self.status = "no host: the Target server tab needs one"
            return
        self.status = f"sampling {self.base_url}/stats every {self.interval.ms} ms"
        self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=True)
            self._greenlet = None
            if self.series is not None and self.available:
                self._sample_series(FINAL_FETCH_TIMEOUT_S)  # the records since the last fetch
            if self.available:
                source = "/stats" if self.series is None else "its status series"
                where = self.base_url
                if self.metrics is not None:
                    where, source = self.metrics.url, "Prometheus"
                self.status = f"stopped with the test; {len(self.history)} samples of {where} ({source}) kept"

    def close(self) -> None:
        self.stop()
        if self.csv is not None:
            self.csv.close()
            self.csv = None

    def _run(self) -> None:
        period = self.interval.seconds
        next_at = time.monotonic()
        while self.available:
            self.sample_once()
            next_at += period
            delay = next_at - time.monotonic()
            if delay < 0:  # a slow answer: keep the period from now on rather than bursting to catch up
                next_at, delay = time.monotonic(), 0.0
            gevent.sleep(delay)

    def sample_once(self) -> ServerSample | None:
        """Ask once and record what came. Returns the newest new sample, or None (and says why, once)."""
        if self.metrics is not None:
            return self._sample_metrics(self.metrics)
        if self.series is not None and self._series_failures < SERIES_FAILURES_BEFORE_ASKING_AGAIN:
            return self._sample_series(FETCH_TIMEOUT_S)
        url = f"{self.base_url}/stats"
        body = self._get(url)
        if body is None:
            return None
        received_at = self.wall()
        stats = self._checked(body)
        if stats is None:
            return None
        port = status_port_of(stats)
        if port is not None:  # the target keeps its own series: read that (again, after failures)
            address = series_url(self.base_url, port)
            if self.series is None or self.series.url != address:
                self.series = SeriesCursor(address)
            self._series_failures = 0
            return self._sample_series(FETCH_TIMEOUT_S)
        self.series = None
        sample = make_sample(stats, self.latest, received_at=received_at, started_at=self.started_at)
        self._record([sample])
        self.status = f"sampling {url} every {self.interval.ms} ms"
        return sample

    def _sample_series(self, timeout: float) -> ServerSample | None:
        """Every record since the last one taken (in pages while the target says there are more)."""
        cursor = self.series
        assert cursor is not None
        newest = None
        for _ in range(MAX_PAGES):
            sent_at = self.wall()
            answer = self._get(cursor.next_url(), timeout)
            if answer is None:
                self._series_failures += 1
                return newest
            received_at = self.wall()
            body = answer[1]
            try:
                records = [check_stats(record) for record in cursor.take(body, sent_at, received_at)]
            except (BadSeries, NotATarget) as error:
                self._series_failures = SERIES_FAILURES_BEFORE_ASKING_AGAIN  # ask /stats again
                log.warning("hammerlab: %s is not a status series (%s)", cursor.url, error)
                return newest
            self._series_failures = 0
            samples = []
            for record in records:
                previous = samples[-1] if samples else self.latest
                at = cursor.local_time(record)
                samples.append(
                    make_sample(record, previous, received_at=at, started_at=self.started_at, own_sockets=0)
                )
            self._record(samples)
            newest = samples[-1] if samples else newest
            self.status = (
                f"reading {cursor.url} (the target's own {body.get('interval_ms', '?')} ms records) "
                f"every {self.interval.ms} ms"
            )
            if not body.get("more"):
                break
        if cursor.missed > self._said_missed:
            log.warning(
                "hammerlab: %d server samples had left the target's ring before they were asked for",
                cursor.missed - self._said_missed,
            )
            self._said_missed = cursor.missed
        return newest

    def _sample_metrics(self, source: MetricsSource) -> ServerSample | None:
        """One scrape of the Prometheus endpoint; a bad answer is said once and tried again next time."""
        answer = self._get(source.url, FETCH_TIMEOUT_S, source.fetch)
        if answer is None:
            return None
        status, text = answer
        try:
            if status != 200:
                raise ValueError(f"it answered HTTP {status}")
            sample = source.sample(text, received_at=self.wall(), started_at=self.started_at)
        except ValueError as error:
            problem = f"{source.url} gave no Prometheus metrics ({str(error)[:200]})"
            if self.status != problem:
                log.warning("hammerlab: %s; trying again every %d ms", problem, self.interval.ms)
            self.status = problem
            return None
        self._record([sample])
        mapped = len(source.mapping)
        self.status = f"reading {source.url} (Prometheus, {mapped} series mapped) every {self.interval.ms} ms"
        return sample

    def _get(
        self, url: str, timeout: float = FETCH_TIMEOUT_S, fetch: Fetch | None = None
    ) -> tuple[int, Any] | None:
        """(status, body), or None when the host cannot be reached (said once per test) or may not be
        (said, and sampling stops for this test)."""
        try:
            target = checked_url(url, self.allow_remote, "the server sampler's URL")
        except URLRefused as refused:
            self.available = False
            self.status = str(refused)
            log.warning("hammerlab: %s", refused)
            return None
        try:
            return (fetch or self.fetch)(target, timeout)
        except (OSError, http.client.HTTPException) as error:
            if not self._said_unreachable:
                self._said_unreachable = True
                log.warning(
                    "hammerlab: cannot reach %s (%s); the Target server tab will fill in when it answers",
                    url,
                    type(error).__name__,
                )
            self.status = f"cannot reach {url}; still trying"
            return None

    def _checked(self, answer: tuple[int, Any]) -> Mapping[str, Any] | None:
        """The /stats body of a Hammerlab target; otherwise says so once and stops for this test."""
        status, body = answer
        try:
            if status != 200:
                raise NotATarget(f"it answered HTTP {status}")
            return check_stats(body)
        except NotATarget as error:
            self.available = False
            self.status = f"{self.base_url} is not a Hammerlab target (it has no Hammerlab /stats: {error})"
            log.warning(
                "hammerlab: %s has no Hammerlab /stats (%s); the Target server tab stays empty for this test",
                self.base_url,
                error,
            )
            return None

    def _record(self, samples: list[ServerSample]) -> None:
        self.history.extend(samples)
        if self.csv is not None and samples:
            self.csv.write([sample.csv_row() for sample in samples])
