"""The replay half of `Defer`: the queue in memory, the drain that replays it, and a stopping test's wait.

Why a module of its own: keeping a call (`defer`: claim the limiter's shed, write the row, recover a
killed run's rows) and replaying it (which slots it may take, when it is too old, what a replay that is
shed again or ends does to its row) are two ideas that meet only at the in-memory queue. The replay rules
are documented in the `defer` module doc; this is their code.

`Replays` is a base of `Defer` and no policy on its own: it owns the replay state (set here, in
`__init__`) and uses the policy's (annotated below: set by `Defer.__init__`, `bind` and `_start`).
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable
from dataclasses import replace

import gevent
from gevent import Greenlet
from hdrh.histogram import HdrHistogram

from mitigations.admission import FifoGate
from mitigations.core import Call, Clock, DeferExpired, Next, Outcome, PipelineEvents, Policy
from mitigations.defer_config import DeferConfig, deferrable
from mitigations.defer_rows import QUEUED, SENDING
from mitigations.defer_store import BatchWriter, DeferredCall
from mitigations.request import RequestSpec

log = logging.getLogger("hammerlab")

FALLBACK_REPLAYS = 4  # concurrent replays when the limiter has no gate to read (SRE throttle)
HDR_MAX_MS = 3_600_000
FINISH_GRACE_S = 1.0  # past the drain's end, for a replay that overran its own deadline a little


class Replays:
    """Drains `Defer`'s queue: expiry, free slots, one greenlet per replay, requeue or final outcome.

    Counters: `replayed` (final outcomes, ok or not), `replayed_ok`, `expired`, `requeued` (replays shed
    again). `replay_delays` is an HdrHistogram of launch-to-final-answer times in milliseconds.
    """

    # The policy's state, set by `Defer` (see the module doc).
    config: DeferConfig
    limiter: Policy | None
    client: str
    clock: Clock
    events: PipelineEvents
    closed: bool
    depth: int
    _offset: float
    _writing: int
    _proceed: Next | None
    _writer: BatchWriter | None
    _guarded: Callable[[Next, Call], Outcome]

    def __init__(self) -> None:
        super().__init__()
        self._queue: list[tuple[int, DeferredCall]] = []
        self._replaying: dict[int, Greenlet] = {}
        self._wired: set[object] = set()  # replay greenlets that put an attempt on the wire
        self._drain_end: float | None = None
        self._replays_stopped = False
        self._mark_failed = False  # the last `sending` mark could not be written (logged once)
        self._paused_until = float("-inf")
        self.replayed = self.replayed_ok = self.expired = self.requeued = 0
        self.replay_delays = HdrHistogram(1, HDR_MAX_MS, 3)

    def _drain_forever(self, every: float) -> None:
        while not self.closed:
            self.drain_once()
            gevent.sleep(every)

    def drain_once(self) -> int:
        """Expire what is too old, then start replays for the free slots. Returns replays started."""
        now = self.clock.now()
        while self._queue and self._too_old(self._queue[0][1], now):
            self._expire(heapq.heappop(self._queue)[1], now)
        started = 0
        if self._proceed is None or self._replays_stopped:
            return started
        if self.config.priority == "fresh" and now < self._paused_until:
            return started
        for _ in range(max(0, min(self.free_slots(), len(self._queue)))):
            if not self._fits_drain(self._queue[0][1], now):
                break  # oldest first: the rest wait on disk for the next run
            kept = heapq.heappop(self._queue)[1]
            self._replaying[kept.id] = gevent.spawn(self._replay, kept)
            started += 1
        return started

    def _fits_drain(self, kept: DeferredCall, now: float) -> bool:
        """While a stopping test drains, a replay starts only if its deadline falls before the drain's
        end: it finishes, and is never cut on the wire (a call without a deadline waits on disk)."""
        if self._drain_end is None:
            return True
        return kept.timeout_s is not None and now + kept.timeout_s <= self._drain_end

    def drain_by(self, end: float) -> None:
        """The test is stopping and its drain ends at `end` (this policy's clock): see `_fits_drain`."""
        self._drain_end = end

    def stop_replaying(self) -> None:
        """Start no more replays (the ones on the wire go on)."""
        self._replays_stopped = True

    def finish_replays(self, timeout: float = FINISH_GRACE_S) -> int:
        """Wait (real time) up to `timeout` for the replays on the wire. Returns how many still run."""
        running = list(self._replaying.values())
        if running and timeout > 0:
            gevent.joinall(running, timeout=timeout)
        return len(self._replaying)

    def free_slots(self) -> int:
        """Slots the drainer may take now: the limiter's free ones, less a reserve for fresh calls."""
        gate = getattr(self.limiter, "gate", None)
        if isinstance(gate, FifoGate) and gate.limit is not None:
            if gate.waiting:
                return 0
            reserve = 0 if self.config.priority == "deferred" else gate.limit // 4
            return gate.limit - reserve - gate.in_use
        return FALLBACK_REPLAYS - len(self._replaying)

    def _launched_at(self, kept: DeferredCall) -> float:
        """The call's launch on this clock: its own, when it was deferred in this run."""
        return kept.launched_epoch - self._offset if kept.launched_at is None else kept.launched_at

    def _too_old(self, kept: DeferredCall, now: float) -> bool:
        return now - self._launched_at(kept) > kept.max_age_s

    def _original(self, kept: DeferredCall) -> Call:
        return Call(
            method=kept.method,
            path=kept.path,
            name=kept.name,
            headers=dict(kept.headers),
            body=kept.body,
            launched_at=self._launched_at(kept),
            recovered=kept.launched_at is None,  # left by an earlier run: in the totals only
        )

    def _expire(self, kept: DeferredCall, now: float) -> None:
        self.expired += 1
        if self._writer is not None:
            self._writer.delete(kept.id)
        self.events.emit("expired", Outcome(call=self._original(kept), finished_at=now, error=DeferExpired()))

    def _replay(self, kept: DeferredCall) -> None:
        current = gevent.getcurrent()
        try:
            now = self.clock.now()
            if self._too_old(kept, now):
                self._expire(kept, now)
                return
            if not self._mark_sending(kept):
                return
            # A row from disk passes the checks a fresh call passes (RequestSpec), and the transport joins
            # its path onto the same checked URL: a stored `@10.200.0.1/x` is refused, never sent.
            spec = RequestSpec(kept.method, kept.path, tuple(dict(kept.headers).items()), kept.body)
            deadline = None if kept.timeout_s is None else now + kept.timeout_s
            attempt = replace(spec.call(now, deadline), name=kept.name)
            assert self._proceed is not None
            outcome = self._guarded(self._proceed, attempt)
        finally:
            self._replaying.pop(kept.id, None)
            wired = current in self._wired
            self._wired.discard(current)
        if deferrable(outcome):  # the limiter said no again: back in line, and let fresh calls go
            self.requeued += 1
            self._paused_until = self.clock.now() + self.config.pause
            if not wired and self._writer is not None and not self.closed:
                self._writer.mark(kept.id, QUEUED)  # it never reached the wire: no doubt about it
            heapq.heappush(self._queue, (kept.id, kept))
            return
        final = Outcome(
            call=self._original(kept),
            finished_at=outcome.finished_at,
            status=outcome.status,
            error=outcome.error,
            headers=outcome.headers,
            length=outcome.length,
        )
        if self._writer is not None:
            self._writer.delete(kept.id)
        self.replayed += 1
        self.replayed_ok += final.ok
        self.replay_delays.record_value(min(HDR_MAX_MS, max(1, round(final.latency * 1000))))
        self.events.emit("replayed", final)

    def _mark_sending(self, kept: DeferredCall) -> bool:
        """Commit the row's `sending` mark before the replay goes out; if that fails, it waits in line."""
        if self._writer is None:
            return True
        try:
            self._writer.mark(kept.id, SENDING, wait=True)
        except Exception as error:  # disk full, file removed: never send what the file cannot vouch for
            if not self.closed and not self._mark_failed:
                log.error("%s: defer queue write failed (%s); replays wait", self.client, error)
            self._mark_failed = True
            heapq.heappush(self._queue, (kept.id, kept))
            return False
        self._mark_failed = False
        return True

    # -- the end ---------------------------------------------------------------------------------------

    def wait_drained(self, timeout: float) -> bool:
        """Wait (real time) until nothing is held, at most `timeout` seconds, or until a stopping
        test's drain can start no more replays (see `_fits_drain`) and none is on the wire. True if
        drained."""
        deadline = time.monotonic() + timeout
        while self.depth and time.monotonic() < deadline and not self._stuck():
            gevent.sleep(0.01)
        return self.depth == 0

    def _stuck(self) -> bool:
        return bool(
            self._drain_end is not None
            and self._queue
            and not self._replaying
            and not self._writing
            and not self._fits_drain(self._queue[0][1], self.clock.now())
        )
