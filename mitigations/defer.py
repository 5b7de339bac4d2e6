"""Defer: a throttle that drops nothing. Calls a limiter sheds wait on disk and are replayed later.

The seed's answer to "You can't just cancel requests!" was only sketched: "some sort of system to ensure
that no requests are dropped: caching them somewhere". This is that system, for traffic that is bursty
rather than always over capacity: the excess of a peak is kept and served in the troughs.

- `Defer` is the outermost layer. A call whose outcome is a shed with a deferrable cause (a limiter
  said no: `throttle`, `adaptive`, `sre-throttle`, or an open breaker) is written to a durable queue
  (`defer_store`, SQLite in WAL mode) and ends as a `Deferred` shed outcome. The limiter's own shed is
  claimed (`PipelineEvents.claim`), so it is announced once, as `deferred`, not also as `throttle`,
  wherever in the call it happened (a hedge sheds its copies in greenlets the call spawned).
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
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import gevent
import gevent.event
from gevent import Greenlet

from mitigations.core import (
    BasePolicy,
    Call,
    Clock,
    DeferQueueFull,
    Deferred,
    Gauges,
    Next,
    Outcome,
    PipelineEvents,
    Policy,
)
from mitigations.defer_checks import check_queue
from mitigations.defer_config import DeferConfig, deferrable
from mitigations.defer_replay import Replays
from mitigations.defer_store import BatchWriter, DeferredCall, DeferStore, in_thread
from mitigations.histograms import encode_histogram

log = logging.getLogger("hammerlab")
LINEAGE_DEPTH = 8  # a call, a hedge's copy of it, ...: far more than any pipeline nests


def _lineage() -> Iterator[object]:
    """The current greenlet, then the greenlet that spawned it, and so on up (gevent keeps the spawn tree
    unless `GEVENT_TRACK_GREENLET_TREE` is off): a call's copies belong to the call that spawned them."""
    current: object = gevent.getcurrent()
    for _ in range(LINEAGE_DEPTH):
        if current is None:
            return
        yield current
        parent = getattr(current, "spawning_greenlet", None)
        current = parent() if parent is not None else None


class Defer(Replays, BasePolicy):
    """Keeps limiter-shed calls in a durable queue and replays them (see module doc; the replaying is
    `defer_replay.Replays`).

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
        self._guarding: dict[object, list[Outcome]] = {}  # greenlet -> the deferrable sheds it held
        self._announcing = False  # a shed let stand is being announced: `_claim` keeps out (no switch)
        self._writing = 0
        self._next_id = 1
        self._proceed: Next | None = None
        self._started: gevent.event.Event | None = None
        self._writer: BatchWriter | None = None
        self._drainer: Greenlet | None = None
        self.closed = False
        self.store_path: Path | None = None
        self.deferred = self.full = self.leftovers = self.in_doubt = self.bad_rows = 0

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
        """Keep a deferrable shed quiet when it happens inside a call this policy may defer, or in a
        greenlet that call spawned (a `Hedge` runs each copy in its own). It is held until the call
        ends: if the call is not deferred after all (an inner `Retry` turned the refused retry back into
        the server failure it was retrying), `_guarded` announces it then."""
        if self._announcing or not self._guarding or not deferrable(outcome):
            return False
        held = next((self._guarding[g] for g in _lineage() if g in self._guarding), None)
        if held is None:
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
        if not deferrable(outcome):
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
        if not deferrable(outcome):
            for shed in held:  # refused retries of a call that ends otherwise: their own rows
                self._announce(shed)
        return outcome

    def _announce(self, shed: Outcome) -> None:
        """Announce a shed this policy let stand. Nobody claims it: not a call that spawned this one (the
        first call spawned the drainer, so every replay descends from it)."""
        self._announcing = True
        try:
            self.events.emit("shed", shed)
        finally:
            self._announcing = False

    def _defer(self, call: Call, refused: Outcome) -> Outcome:
        if self.closed or self._writer is None:
            self._announce(refused)  # too late to keep it: the limiter's shed stands
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
            self._announce(refused)
            return refused
        finally:
            self._writing -= 1
        heapq.heappush(self._queue, (kept.id, kept))
        self.deferred += 1
        return self.shed(call, Deferred())

    # -- start and recovery ----------------------------------------------------------------------------

    def _start(self, proceed: Next) -> None:
        """Open the store (off the loop), load leftovers, start the writer and the drainer. Once."""
        if self._started is not None:
            self._started.wait()
            return
        self._started = gevent.event.Event()
        self._proceed = proceed
        try:
            store = in_thread(
                partial(DeferStore.open, private=self.config.private), self.config.directory, self.client
            )
            loaded = in_thread(store.load)
        except Exception as error:
            log.error(
                "%s: cannot open the defer queue in %s (%s); shedding instead",
                self.client,
                self.config.directory,
                error,
            )
            self.closed = True
            self._started.set()
            return
        self.store_path = store.path
        self._offset = self._wall() - self.clock.now()
        found = loaded.calls
        for kept in found:
            heapq.heappush(self._queue, (kept.id, kept))
        self._next_id = loaded.last_id + 1  # past every row, set-aside ones of earlier runs included
        self.leftovers = len(found)
        self.in_doubt, self.bad_rows = len(loaded.in_doubt), len(loaded.bad)
        if loaded.in_doubt:
            log.warning(
                "%s: %d deferred calls in %s were on the wire when an earlier run ended, and are "
                "not safe to send twice (not idempotent, no Idempotency-Key): set aside, never sent "
                "again (state 'in-doubt' in the file)",
                self.client,
                self.in_doubt,
                store.path,
            )
        if loaded.bad:
            log.warning(
                "%s: %d rows of %s fail the request checks (first: row %s, %s): set aside, never "
                "sent (state 'bad' in the file)",
                self.client,
                self.bad_rows,
                store.path,
                *loaded.bad[0],
            )
        if found:
            self.events.emit("recovered", len(found))
            log.info(
                "%s: found %d deferred calls left by an earlier run in %s; replaying them first",
                self.client,
                len(found),
                store.path,
            )
        self._writer = BatchWriter(store)
        if self.config.drain_every is not None:
            self._drainer = gevent.spawn(self._drain_forever, self.config.drain_every)
        self._started.set()

    def start(self, proceed: Next) -> None:
        """Start now rather than at the first call (to replay leftovers before any new traffic)."""
        self._start(proceed)

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
