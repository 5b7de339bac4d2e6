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

`PREFIX_server.csv` is a contract (the comparison runner reads it instead of sampling itself): one row
per sample, its columns and their meanings in `mitigations.csv_schema.SERVER_COLUMNS`. The samples
themselves and their rates are `server_sample`'s.

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
from pathlib import Path
from typing import Any, Protocol

import gevent

from locust_plugin.csv_log import CsvLog
from locust_plugin.server_sample import NotATarget, SampleInterval, ServerSample, check_stats, make_sample
from locust_plugin.server_series import MAX_PAGES, BadSeries, SeriesCursor, series_url, status_port_of
from mitigations.checked_url import CheckedURL, URLRefused, checked_url
from mitigations.csv_schema import SERVER_COLUMNS
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

HISTORY_SAMPLES = 7200  # an hour at 500 ms: the UI's download, never the CSV file, is bounded by this
FETCH_TIMEOUT_S = 3.0  # a melting server answers /stats late; a later sample is better than none
FINAL_FETCH_TIMEOUT_S = 1.0  # at the test's stop, one last read of the series, kept short
# At the test's stop (after the drain), wait this long at most for a record the target took after it, so
# that the last row counts every request of the test (the target records every --log-interval-ms, 250 ms).
FINAL_RECORD_WAIT_S = 1.5
FINAL_POLL_S = 0.05
SERIES_FAILURES_BEFORE_ASKING_AGAIN = 3  # then ask /stats where the series is (a restarted target)

Fetch = Callable[[CheckedURL, float], tuple[int, Any]]
"""(url, timeout) -> (HTTP status, parsed JSON body or None). Raises OSError-like errors when unreachable."""


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
                self._final_series()
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

    def _final_series(self) -> None:
        """The records since the last fetch, up to one the target took after this moment: the test has
        stopped and drained, so that record's totals hold every request the test sent. Without the wait the
        last row could be up to one recording period old and miss the drain's last requests."""
        stopped_at = self.wall()
        give_up = time.monotonic() + FINAL_RECORD_WAIT_S
        while True:
            failures = self._series_failures
            self._sample_series(FINAL_FETCH_TIMEOUT_S)
            latest = self.latest
            if (
                (latest is not None and latest.timestamp >= stopped_at)
                or self._series_failures > failures
                or time.monotonic() >= give_up
            ):
                return
            gevent.sleep(FINAL_POLL_S)

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
