"""The server's own status series, recorded and served off the event loop that the overload blocks.

The seed's server logged its status every 250 ms from inside its own process. Asking `/stats` from
outside does not survive a meltdown: the question waits in the same listen backlog, the same socket pool
and the same blocked gevent loop as the load, so most answers come late or never (13 of 40 under
HammerClient at 2x capacity). So the server keeps the record itself, as the seed did:

- a native thread (not a greenlet) reads the counters every `log_interval_ms` into a bounded ring, with
  the server's wall-clock time and a sequence number. A busy-spinning loop holds the GIL for at most
  the interpreter's switch interval (5 ms), so the record is on time even when the loop is a second late;
- a second listener, on its own port (`--status-port`; 0 picks a free one, -1 turns it off) with its own
  small pool of threads and its own backlog, serves `GET /stats/series?since=<seq>`: every record after
  `seq`. A sampler that asks late loses nothing: the next answer backfills.

The reader never writes to the state (no peaks, no fault pruning), so it needs no lock with the loop;
the ring has its own lock between the recorder and the listener's threads. Under gunicorn the listener is
not started (one port cannot belong to several workers): /stats says `status_port: null` there.
"""

from __future__ import annotations

import json
import math
import secrets
import socket
from collections import deque
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from gevent.monkey import get_original

from target_server.criticality import LEVELS
from target_server.snapshot import CRITICALITY_ENDS

if TYPE_CHECKING:
    from target_server.state import TargetState

# Native primitives even if someone monkey-patched this process: the point is to run beside the loop.
_start_thread = get_original("_thread", "start_new_thread")
_allocate_lock = get_original("_thread", "allocate_lock")
_sleep = get_original("time", "sleep")

SERIES_SCHEMA = 1
SERIES_PATH = "/stats/series"
RING_RECORDS = 4096  # 17 minutes at 250 ms: a sampler that stalls for less loses nothing
MAX_BATCH = 1000  # records in one answer; `more` says when there are further ones
LISTENER_THREADS = 4  # the listener's pool: past it, connections wait in its own backlog
LISTENER_BACKLOG = 16
CONNECTION_TIMEOUT_S = 2.0  # a client that stalls mid-request frees its thread after this
READ_RETRIES = 5


class StatusRing:
    """The newest `capacity` records, numbered 1, 2, 3... in the order they were added. Thread-safe."""

    def __init__(self, capacity: int = RING_RECORDS) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be 1 or more, got {capacity!r}")
        self._records: deque[dict[str, Any]] = deque(maxlen=capacity)
        self._lock = _allocate_lock()
        self.latest_seq = 0

    def append(self, record: dict[str, Any]) -> int:
        with self._lock:
            self.latest_seq += 1
            self._records.append({"seq": self.latest_seq, **record})
            return self.latest_seq

    def since(self, seq: int | None, limit: int = MAX_BATCH) -> dict[str, Any]:
        """Records after `seq` (oldest first, at most `limit`), or only the newest one when `seq` is None.
        `missed` counts the records after `seq` that had already left the ring."""
        with self._lock:
            records = list(self._records)
            latest = self.latest_seq
        oldest = records[0]["seq"] if records else latest + 1
        if seq is None:
            chosen, missed = records[-1:], 0
        else:
            after = [r for r in records if r["seq"] > seq] if seq >= oldest - 1 else records
            missed = max(0, oldest - 1 - seq) if records else 0
            chosen = after[:limit]
        more = bool(chosen) and chosen[-1]["seq"] < latest
        return {"oldest_seq": oldest, "latest_seq": latest, "missed": missed, "more": more, "samples": chosen}


def read_status(state: TargetState) -> dict[str, Any]:
    """The numbers the seed logged, and the totals a sampler needs for rates, read without writing.

    /admin/reset zeroes the totals one by one between `control.reset_epoch` moving and `state.epoch`
    catching up, so a read is kept only when both agreed before and after it."""
    for _ in range(READ_RETRIES):
        epoch = state.control.reset_epoch
        before = state.epoch
        record = _read_once(state)
        if before == epoch == state.epoch == state.control.reset_epoch:
            return record
        _sleep(0.001)
    return record


def _read_once(state: TargetState) -> dict[str, Any]:
    now = state.wall()
    totals, gauges = state.totals, state.gauges
    reset_at = state.control.reset_at
    faults = [fault.to_json(now) for fault in state.control.faults.current(now)]
    return {
        "time": round(now, 3),
        "since_reset_s": round(now - (reset_at if reset_at is not None else state.started_wall), 3),
        "reset_count": state.control.reset_epoch,
        "lag_ms": round(state.lag.lag_ms, 3),
        "in_flight": gauges.in_flight,
        "concurrent": gauges.concurrent,
        "sockets": state.sockets(),
        "requests_total": totals.requests,
        "completed_total": totals.completed,
        "rejected_total": totals.rejected,
        "errors_total": totals.errors,
        "bad_requests_total": totals.bad_requests,
        "abandoned_total": totals.abandoned,
        "expired_total": totals.expired,
        "work_cpu_ms_total": round(totals.work_cpu_ms, 3),
        "wasted_cpu_ms_total": round(totals.wasted_cpu_ms, 3),
        "peak_lag_ms": round(state.lag.peak_ms, 3),
        "peak_in_flight": gauges.peak_in_flight,
        "peak_concurrent": gauges.peak_concurrent,
        "peak_sockets": gauges.peak_sockets,
        "faults": faults,
        "by_criticality_total": {  # /doWork requests by their Hammerlab-Criticality header
            level: {ended: totals.by_criticality.get(level, {}).get(ended, 0) for ended in CRITICALITY_ENDS}
            for level in LEVELS
        },
    }


class BadQuery(ValueError):
    """A query parameter the series endpoint does not accept; the message names it and what is allowed."""


def parse_series_query(query: str) -> tuple[int | None, int]:
    """`since` (an integer >= 0, or absent for the newest record only) and `limit` (1 to MAX_BATCH)."""
    params = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(params) - {"since", "limit"})
    if unknown:
        raise BadQuery(f"unknown parameter {unknown[0]!r}; allowed: since, limit")
    since = _int_param(params, "since", 0, None)
    limit = _int_param(params, "limit", 1, MAX_BATCH)
    return since, MAX_BATCH if limit is None else limit


def _int_param(params: dict[str, list[str]], name: str, low: int, high: int | None) -> int | None:
    if name not in params:
        return None
    text = params[name][-1]
    allowed = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"
    try:
        value = int(text)
    except ValueError:
        raise BadQuery(f"{name}: must be {allowed}, got {text!r}") from None
    if value < low or (high is not None and value > high):
        raise BadQuery(f"{name}: must be {allowed}, got {text!r}")
    return value


class _Handler(BaseHTTPRequestHandler):
    server: _Listener
    timeout = CONNECTION_TIMEOUT_S
    server_version = "hammerlab-status/1"

    def do_GET(self) -> None:  # http.server's naming
        url = urlsplit(self.path)
        if url.path == "/ping":
            self._send(200, {"result": "pong"})
        elif url.path == SERIES_PATH:
            try:
                since, limit = parse_series_query(url.query)
            except BadQuery as error:
                self._send(400, {"error": str(error)})
                return
            self._send(200, self.server.status.answer(since, limit))
        else:
            self._send(404, {"error": f"no {url.path} here; this port serves {SERIES_PATH} and /ping"})

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # http.server's signature
        pass  # the status series is not worth a log line per request


class _Listener(HTTPServer):
    """http.server on native threads, at most LISTENER_THREADS at once: the accept loop waits for a free
    thread, and meanwhile new connections wait in this listener's own backlog, never the load's."""

    request_queue_size = LISTENER_BACKLOG
    daemon_threads = True

    def __init__(self, address: tuple[str, int], status: StatusLog) -> None:
        self.status = status
        self._slots = [_allocate_lock() for _ in range(LISTENER_THREADS)]
        if ":" in address[0]:  # an IPv6 host (`--host ::`): the listener follows the main one
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        slot = self._take_slot()
        _start_thread(self._serve_one, (request, client_address, slot))

    def _take_slot(self) -> Any:
        while True:
            for slot in self._slots:
                if slot.acquire(False):
                    return slot
            _sleep(0.005)

    def _serve_one(self, request: Any, client_address: Any, slot: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # a broken client must not take the listener down
            pass
        finally:
            self.shutdown_request(request)
            slot.release()


class StatusLog:
    """The recorder thread, the ring and the listener of one server process. `start()`, then `stop()`."""

    def __init__(self, state: TargetState, host: str, port: int, interval_ms: float) -> None:
        self.state = state
        self.interval_s = interval_ms / 1000
        self.interval_ms = interval_ms
        self.ring = StatusRing(max(16, min(RING_RECORDS, math.ceil(600 / self.interval_s))))
        self.instance = secrets.token_hex(6)  # a restarted server numbers its records from 1 again
        self._listener = _Listener((host, port), self)
        self.port: int = self._listener.server_address[1]
        self._stopping = False

    def start(self) -> None:
        _start_thread(self._record_forever, ())
        _start_thread(self._listener.serve_forever, (0.1,))

    def stop(self) -> None:
        self._stopping = True
        self._listener.shutdown()
        self._listener.server_close()

    def record_once(self) -> int:
        return self.ring.append(read_status(self.state))

    def answer(self, since: int | None, limit: int) -> dict[str, Any]:
        return {
            "schema": SERIES_SCHEMA,
            "instance": self.instance,
            "interval_ms": self.interval_ms,
            "now": round(self.state.wall(), 3),
            **self.ring.since(since, limit),
        }

    def _record_forever(self) -> None:
        clock = get_original("time", "monotonic")
        next_at = clock()
        while not self._stopping:
            self.record_once()
            next_at += self.interval_s
            delay = next_at - clock()
            if delay < 0:  # behind by a whole period (a stopped process): start the schedule again
                next_at, delay = clock(), 0.0
            _sleep(delay)


def start_status_log(state: TargetState, host: str, port: int, interval_ms: float) -> StatusLog:
    """Bind the listener (raises OSError) and start recording. Port 0 picks a free one."""
    status = StatusLog(state, host, port, interval_ms)
    status.start()
    state.status_port = status.port
    return status
