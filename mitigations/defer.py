"""Defer: a throttle that drops nothing. Calls a limiter sheds wait on disk and are replayed later.

The seed's answer to "You can't just cancel requests!" was only sketched: "some sort of system to ensure
that no requests are dropped: caching them somewhere". This is that system, for traffic that is bursty
rather than always over capacity: the excess of a peak is kept and served in the troughs.

- `Defer` is the outermost layer. A call whose outcome is a shed with a deferrable cause (a limiter
  said no: `throttle`, `adaptive`, `sre-throttle`, or an open breaker) is written to a durable queue
  (`defer_store`, SQLite in WAL mode) and ends as a `Deferred` shed outcome. The limiter's own shed is
  claimed (`PipelineEvents.claim`), so it is announced once, as `deferred`, not also as `throttle`.
- A drainer greenlet replays queued calls, oldest first, when the limiter has free slots. With
  priority `fresh` (the default) it leaves a quarter of the limiter's slots (rounded down) to fresh
  calls and pauses while fresh calls are being deferred, so a trough serves newcomers first; with
  `deferred` it takes every free slot.
- A replay runs through the whole pipeline again (retry budget, breaker, limiter, timeout), with a
  fresh deadline of the call's total timeout. Shed again by the limiter, it goes back in line; any
  other end is its final outcome, announced once with the event `replayed`.
- Each call keeps its method, path, headers (an `Idempotency-Key` included: the replay sends it as is),
  body and launch time. Older than `max_age` (from launch) it is expired, never sent: event `expired`.
- The queue holds at most `max_queue` calls; beyond that the call is shed with `DeferQueueFull`
  (cause `defer-full`).
- A run killed mid-way leaves its queue on disk; the next run of the class with the same directory
  replays it first and logs how many calls it found. Every loaded row meets the request checks of a
  fresh call first; one that fails them is set aside, never sent, and counted (`bad_rows`).
- A replay marks its row `sending` (committed) before it goes on the wire. When a test stops, the drain
  (`drain_by`) starts only replays whose deadline falls before its end, so the replays on the wire
  finish rather than being cut. A row still `sending` when a later run loads it is a replay whose
  outcome is unknown: sent again only when that is safe (an idempotent method, or an Idempotency-Key
  the server can drop the duplicate by), else set aside and counted (`in_doubt`), never sent twice.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import gevent
import gevent.event
from gevent import Greenlet
from hdrh.histogram import HdrHistogram

from mitigations._checks import check_choice, check_int, check_seconds
from mitigations.admission import FifoGate
from mitigations.core import (
    BasePolicy,
    Call,
    Clock,
    DeferExpired,
    DeferQueueFull,
    Deferred,
    Gauges,
    Next,
    Outcome,
    PipelineEvents,
    Policy,
    Shed,
)
from mitigations.defer_checks import check_queue, default_directory
from mitigations.defer_rows import QUEUED, SENDING
from mitigations.defer_store import BatchWriter, DeferredCall, DeferStore, in_thread
from mitigations.histograms import encode_histogram
from mitigations.request import RequestSpec

log = logging.getLogger("hammerlab")

DEFERRABLE_CAUSES = frozenset({"throttle", "adaptive", "sre-throttle", "circuit-open"})
PRIORITIES = ("fresh", "deferred")
FALLBACK_REPLAYS = 4  # concurrent replays when the limiter has no gate to read (SRE throttle)
HDR_MAX_MS = 3_600_000
FINISH_GRACE_S = 1.0  # past the drain's end, for a replay that overran its own deadline a little


@dataclass(frozen=True)
class DeferConfig:
    """Where the queue lives and how it drains.

    `directory`: one SQLite file per client class in it. `max_age`: seconds from launch after which a
    queued call is expired. `max_queue`: calls held at most. `priority`: `fresh` or `deferred` (see
    the module doc). `drain_every`: the drainer's tick in seconds; None runs no drainer greenlet (the
    owner calls `drain_once`, as the FakeClock tests do). `pause`: with priority `fresh`, how long
    replays wait after a fresh call was deferred or a replay was shed again. `private`: the folder is
    the default one in the shared temp directory, so it must belong to this user and be closed to
    others (`defer_checks`).
    """

    directory: Path | str = field(default_factory=default_directory)
    max_age: float = 60.0
    max_queue: int = 10_000
    priority: str = "fresh"
    drain_every: float | None = 0.01
    pause: float = 0.1
    private: bool = False

    def __post_init__(self) -> None:
        check_seconds("DeferConfig", "max_age", self.max_age)
        check_int("DeferConfig", "max_queue", self.max_queue, minimum=1)
        check_choice("DeferConfig", "priority", self.priority, PRIORITIES)
        check_seconds("DeferConfig", "drain_every", self.drain_every, allow_none=True)
        check_seconds("DeferConfig", "pause", self.pause)


class Defer(BasePolicy):
    """Keeps limiter-shed calls in a durable queue and replays them (see module doc).

    Counters: `deferred`, `replayed` (final outcomes, ok or not), `replayed_ok`, `expired`, `full`
    (shed with DeferQueueFull), `requeued` (replays shed again), `leftovers` (found at start, to
    replay), `in_doubt` and `bad_rows` (found at start and set aside, never sent: see the module doc).
    Gauge: `depth` (calls held: queued, being written or being replayed). `replay_delays` is an
    HdrHistogram of launch-to-final-answer times in milliseconds.
    """

    name = "defer"

    def __init__(
        self,
        config: DeferConfig,
        limiter: Policy | None = None,
        *,
        client: str = "client",
        wall: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.config = config
        self.limiter = limiter
        self.client = client
        self._wall = wall
        self._offset = 0.0  # wall seconds minus clock seconds, fixed at start
        self._queue: list[tuple[int, DeferredCall]] = []
        self._replaying: dict[int, Greenlet] = {}
        self._guarding: dict[object, list[Outcome]] = {}  # greenlet -> the deferrable sheds it held
        self._wired: set[object] = set()  # replay greenlets that put an attempt on the wire
        self._drain_end: float | None = None
        self._replays_stopped = False
        self._mark_failed = False  # the last `sending` mark could not be written (logged once)
        self._writing = 0
        self._next_id = 1
        self._paused_until = float("-inf")
        self._proceed: Next | None = None
        self._started: gevent.event.Event | None = None
        self._writer: BatchWriter | None = None
        self._drainer: Greenlet | None = None
        self.closed = False
        self.store_path: Path | None = None
        self.deferred = self.replayed = self.replayed_ok = self.expired = 0
        self.full = self.requeued = self.leftovers = self.in_doubt = self.bad_rows = 0
        self.replay_delays = HdrHistogram(1, HDR_MAX_MS, 3)

    # -- wiring ------------------------------------------------------------------------------------

    def bind(self, clock: Clock, events: PipelineEvents) -> None:
        super().bind(clock, events)
        events.claim("shed", self._claim)
        events.on("client", self._named)
        events.on("wire", self._saw_wire)

    def _named(self, client: str) -> None:
        if self._started is None:
            self.client = client

    def _saw_wire(self, _outcome: Outcome) -> None:
        current = gevent.getcurrent()
        if current in self._replaying.values():
            self._wired.add(current)

    def check(self, client: str) -> None:
        """Refuse, before a run, a folder or queue file that cannot hold `client`'s queue: raises
        `QueueProblem` (a ValueError) with one line naming the path and what is wrong."""
        check_queue(Path(self.config.directory), client, private=self.config.private)

    def _claim(self, outcome: Outcome) -> bool:
        """Keep a deferrable shed quiet when it happens inside a call this policy may defer. It is held
        until the call ends: if the call is not deferred after all (an inner `Retry` turned the refused
        retry back into the server failure it was retrying), `_guarded` announces it then."""
        held = self._guarding.get(gevent.getcurrent())
        if held is None or not _deferrable(outcome):
            return False
        held.append(outcome)
        return True

    @property
    def depth(self) -> int:
        return len(self._queue) + len(self._replaying) + self._writing

    def gauges(self, wall_now: float) -> Gauges:
        return {
            "deferred": self.deferred,
            "replayed": self.replayed,
            "expired": self.expired,
            "defer_queue_depth": self.depth,
            "replay_hdr": encode_histogram(self.replay_delays) or None,
            "in_doubt": self.in_doubt,
            "bad_rows": self.bad_rows,
        }

    # -- the fresh call ------------------------------------------------------------------------------

    def execute(self, call: Call, proceed: Next) -> Outcome:
        self._start(proceed)
        outcome = self._guarded(proceed, call)
        if not _deferrable(outcome):
            return outcome
        return self._defer(call, outcome)

    def _guarded(self, proceed: Next, call: Call) -> Outcome:
        current = gevent.getcurrent()
        held: list[Outcome] = []
        self._guarding[current] = held
        try:
            outcome = proceed(call)
        finally:
            self._guarding.pop(current, None)
        if not _deferrable(outcome):
            for shed in held:  # refused retries of a call that ends otherwise: their own rows
                self.events.emit("shed", shed)
        return outcome

    def _defer(self, call: Call, refused: Outcome) -> Outcome:
        if self.closed or self._writer is None:
            self.events.emit("shed", refused)  # too late to keep it: the limiter's shed stands
            return refused
        if self.depth >= self.config.max_queue:
            self.full += 1
            return self.shed(call, DeferQueueFull())
        self._paused_until = self.clock.now() + self.config.pause
        kept = DeferredCall(
            id=self._next_id,
            method=call.method,
            path=call.path,
            name=call.name,
            headers=dict(call.headers),
            body=call.body,
            launched_epoch=call.launched_at + self._offset,
            max_age_s=self.config.max_age,
            timeout_s=None if call.deadline is None else call.deadline - call.launched_at,
            launched_at=call.launched_at,
        )
        self._next_id += 1
        self._writing += 1
        try:
            self._writer.insert(kept)
        except Exception as error:  # disk full, file removed: shed, never crash a user
            log.error("%s: defer queue write failed (%s); shedding the call", self.client, error)
            self.events.emit("shed", refused)
            return refused
        finally:
            self._writing -= 1
        heapq.heappush(self._queue, (kept.id, kept))
        self.deferred += 1
        return self.shed(call, Deferred())

    # -- start, drain, replay ------------------------------------------------------------------------

    def _start(self, proceed: Next) -> None:
        """Open the store (off the loop), load leftovers, start the writer and the drainer. Once."""
        if self._started is not None:
            self._started.wait()
            return
        self._started = gevent.event.Event()
        self._proceed = proceed
        try:
            store = in_thread(partial(DeferStore.open, private=self.config.private),
                              self.config.directory, self.client)
            loaded = in_thread(store.load)
        except Exception as error:
            log.error("%s: cannot open the defer queue in %s (%s); shedding instead", self.client,
                      self.config.directory, error)
            self.closed = True
            self._started.set()
            return
        self.store_path = store.path
        self._offset = self._wall() - self.clock.now()
        found = loaded.calls
        for kept in found:
            heapq.heappush(self._queue, (kept.id, kept))
        set_aside = [kept.id for kept in loaded.in_doubt] + [row for row, _ in loaded.bad]
        self._next_id = max([*(kept.id for kept in found), *set_aside], default=0) + 1
        self.leftovers = len(found)
        self.in_doubt, self.bad_rows = len(loaded.in_doubt), len(loaded.bad)
        if loaded.in_doubt:
            log.warning("%s: %d deferred calls in %s were on the wire when an earlier run ended, and are "
                        "not safe to send twice (not idempotent, no Idempotency-Key): set aside, never sent "
                        "again (state 'in-doubt' in the file)", self.client, self.in_doubt, store.path)
        if loaded.bad:
            log.warning("%s: %d rows of %s fail the request checks (first: row %s, %s): set aside, never "
                        "sent (state 'bad' in the file)", self.client, self.bad_rows, store.path,
                        *loaded.bad[0])
        if found:
            self.events.emit("recovered", len(found))
            log.info("%s: found %d deferred calls left by an earlier run in %s; replaying them first",
                     self.client, len(found), store.path)
        self._writer = BatchWriter(store)
        if self.config.drain_every is not None:
            self._drainer = gevent.spawn(self._drain_forever, self.config.drain_every)
        self._started.set()

    def start(self, proceed: Next) -> None:
        """Start now rather than at the first call (to replay leftovers before any new traffic)."""
        self._start(proceed)

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
            method=kept.method, path=kept.path, name=kept.name, headers=dict(kept.headers),
            body=kept.body, launched_at=self._launched_at(kept), recovered=kept.launched_at is None,
        )  # fmt: skip

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
        if _deferrable(outcome):  # the limiter said no again: back in line, and let fresh calls go
            self.requeued += 1
            self._paused_until = self.clock.now() + self.config.pause
            if not wired and self._writer is not None and not self.closed:
                self._writer.mark(kept.id, QUEUED)  # it never reached the wire: no doubt about it
            heapq.heappush(self._queue, (kept.id, kept))
            return
        final = Outcome(
            call=self._original(kept), finished_at=outcome.finished_at, status=outcome.status,
            error=outcome.error, headers=outcome.headers, length=outcome.length,
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
            self._drain_end is not None and self._queue and not self._replaying and not self._writing
            and not self._fits_drain(self._queue[0][1], self.clock.now())
        )

    def close(self) -> None:
        """Stop replaying and close the file. Queued calls stay on disk for the next run of this class;
        a replay still on the wire now is ended, and its row stays `sending` (its outcome is unknown)."""
        if self.closed:
            return
        self.closed = True
        self._replays_stopped = True
        if self._drainer is not None:
            self._drainer.kill()
        gevent.killall(list(self._replaying.values()))
        if self._writer is not None:
            self._writer.close()


def _deferrable(outcome: Outcome) -> bool:
    return isinstance(outcome.error, Shed) and outcome.error.cause in DEFERRABLE_CAUSES
