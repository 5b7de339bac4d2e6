"""Reading the target's own status series (`GET /stats/series?since=<seq>` on its status port).

The target records its status every 250 ms on a thread beside its event loop and serves the records from a
listener of their own (target_server/status_log.py), announced as `status_port` in `/stats`. A
`SeriesCursor` remembers the last sequence number it took, so each answer carries every record since the
previous one: an answer that comes late backfills, and nothing is lost while the ring holds it.

Each record carries the server's wall-clock time. The cursor maps it onto this machine's clock with the
offset seen in the fastest exchange so far (NTP's idea: the server's `now` is taken halfway through the
round trip), so the CSV's `timestamp` is when the server was in that state, on the sampler's clock.
On loopback the offset is a fraction of a millisecond.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

SERIES_PATH = "/stats/series"
SERIES_SCHEMA = 1
MAX_PAGES = 20  # answers per fetch while the target says there are `more`: 20,000 records at most


class BadSeries(ValueError):
    """The status port answered, but not with a status series."""


def series_url(base_url: str, port: int) -> str:
    """`http://host:3000` and 41234 -> `http://host:41234/stats/series`: same host, the status port."""
    parts = urlsplit(base_url)
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return urlunsplit((parts.scheme or "http", f"{host}:{port}", SERIES_PATH, "", ""))


def status_port_of(stats: Mapping[str, Any]) -> int | None:
    """The status port a target's /stats announces, or None (an older target, gunicorn, or turned off)."""
    port = stats.get("status_port")
    if isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536:
        return port
    return None


@dataclass
class SeriesCursor:
    """Where the sampler is in one target's series: the series URL, the target instance and last seq."""

    url: str
    instance: str | None = None
    last_seq: int | None = None  # None: ask for the newest record only (the test just started)
    offset_s: float = 0.0  # add to the server's time to get this machine's
    best_rtt_s: float = field(default=float("inf"))
    missed: int = 0  # records that left the target's ring before they were asked for

    def next_url(self) -> str:
        return self.url if self.last_seq is None else f"{self.url}?since={self.last_seq}"

    def take(self, body: Any, sent_at: float, received_at: float) -> list[Mapping[str, Any]]:
        """The new records of one answer, oldest first; advances the cursor. Raises BadSeries."""
        if not isinstance(body, Mapping) or body.get("schema") != SERIES_SCHEMA:
            raise BadSeries("the answer is not a status series (schema 1)")
        samples = body.get("samples")
        instance = body.get("instance")
        if not isinstance(samples, list) or not isinstance(instance, str):
            raise BadSeries("the answer has no samples or no instance")
        if self.instance is not None and instance != self.instance:
            # another server answers on that port (a restart): start from its first record next time
            self.instance, self.last_seq = instance, 0
            return []
        self.instance = instance
        now = body.get("now")
        if isinstance(now, int | float) and received_at - sent_at < self.best_rtt_s:
            self.best_rtt_s = received_at - sent_at
            self.offset_s = (sent_at + received_at) / 2 - float(now)
        missed = body.get("missed")
        if isinstance(missed, int) and self.last_seq is not None:
            self.missed += missed
        fresh = [
            record
            for record in samples
            if isinstance(record, Mapping)
            and isinstance(record.get("seq"), int)
            and (self.last_seq is None or record["seq"] > self.last_seq)
        ]
        if fresh:
            self.last_seq = fresh[-1]["seq"]
        return fresh

    def local_time(self, record: Mapping[str, Any]) -> float:
        """When the server recorded `record`, on this machine's clock."""
        return float(record["time"]) + self.offset_s
