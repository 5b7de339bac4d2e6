"""Where every launched call ends up: one count per final outcome, an SLO count and an HDR histogram.

The ledger counts *logical* calls (what the application asked for), not attempts: a call retried twice
is one call with one final outcome. Each launched call ends in exactly one of

    ok             answered without error (a 2xx or 3xx)
    server_errors  reached for the server and failed (any wire kind: 503, reset, deadline, 4xx, ...)
    shed           held back by a mitigation or the client itself; never reached the server
    unfinished     still in flight when the test ended and the drain ran out (see `ClientRuntime.drain`)

so `launched = ok + server_errors + shed + unfinished + in_flight` holds at every moment, and with
nothing in flight at the end of a test, `launched = ok + server_errors + shed + unfinished`.

`slo_ok` counts the answers that were 2xx *and* came within `slo_ms` of the scheduled launch: goodput
that a user of the client would call good. Latency goes into an HdrHistogram (three significant digits,
1 µs to one hour), recorded from the scheduled launch for every answered call (ok or failed; shed and
unfinished calls have no answer to time), as wrk2 does. Histograms travel between Locust processes as
HdrHistogram's compact base64 encoding and merge by adding (`merge_encoded`).

A call that `Defer` kept for later is none of these yet: it is `pending` until its replay ends (then
it lands in its column, timed from its original launch, so a late replay is not SLO goodput) or it
expires (a shed with cause `defer-expired`). Calls found on disk from an earlier run are `recovered`:
launched by this run's count, and pending. What is still pending when a test's drain runs out counts as
unfinished, and as `kept`: it stays on disk for the next run. Mid-run the identity reads
`launched = ok + server_errors + shed + unfinished + in_flight + pending`.

`lost` (a call neither served nor kept for later) is `launched - ok - kept`: every server error, every
shed (an expired deferral included) and every unfinished call nobody kept (see docs/accounting.md).

Skipped launch slots (the generator stalled and did not launch them) are counted here too, apart from
`launched`: they are intended load that never existed, so they never enter the percentiles, and a run
that skipped more than `csv_schema.SKIP_WARN_SHARE` of its intended launches is flagged everywhere it is
shown.

With `--criticality-mix` the ledger also keeps one sub-ledger per criticality (`split`, by the call's
`Hammerlab-Criticality` header: docs/criticality.md), each with its own counts and histogram, so SLO
goodput, attainment and the percentiles can be read for critical and sheddable calls apart, and the
identity holds in each. Calls an earlier run left in `Defer`'s file (`recover`) are in the totals only:
their label is not known until they are replayed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hdrh.histogram import HdrHistogram

from mitigations.core import Call, Deferred, Outcome, Shed
from mitigations.criticality import CRITICALITIES, criticality_of
from mitigations.histograms import encode_histogram, record_batch

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour
SIGNIFICANT_DIGITS = 3
PERCENTILES = (("p50_ms", 50.0), ("p95_ms", 95.0), ("p99_ms", 99.0), ("p999_ms", 99.9))
# Latencies wait in a list and reach the histogram in one pass when it is read (`record_batch`), or
# when this many have piled up (a process that nobody samples keeps its memory bounded).
RECORD_BATCH = 4096


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def merge_encoded(encoded: Iterable[str]) -> HdrHistogram:
    """One histogram holding every encoded histogram given (empty strings are skipped)."""
    total = new_histogram()
    for text in encoded:
        if text:
            total.decode_and_add(text)
    return total


@dataclass(frozen=True)
class LatencySummary:
    """Percentiles in milliseconds from a histogram; None where it holds no value."""

    count: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    max_ms: float | None

    @classmethod
    def of(cls, histogram: HdrHistogram) -> LatencySummary:
        count = histogram.get_total_count()
        if not count:
            return cls(0, None, None, None, None, None)
        values = {name: histogram.get_value_at_percentile(p) / 1000.0 for name, p in PERCENTILES}
        return cls(count=count, max_ms=histogram.get_max_value() / 1000.0, **values)


class CallLedger:
    """The final outcome of every logical call of one client class in one process."""

    def __init__(self, slo_ms: float, split: bool = False) -> None:
        if not slo_ms > 0:
            raise ValueError(f"slo_ms must be > 0, got {slo_ms!r}")
        self.slo_ms = slo_ms
        self.launched = 0
        self.skipped = 0
        self.ok = 0
        self.slo_ok = 0
        self.server_errors = 0
        self.shed = 0
        self.unfinished = 0
        self.pending = 0  # deferred calls not yet replayed or expired (`Defer` keeps the other counts)
        self.kept = 0  # of `unfinished`: deferred calls still queued at the end, left on disk
        self.shed_by_cause: dict[str, int] = {}
        self.errors_by_kind: dict[str, int] = {}
        self._histogram = new_histogram()
        self._unrecorded: list[int] = []
        self.split: dict[str, CallLedger] | None = (
            {name: CallLedger(slo_ms) for name in CRITICALITIES} if split else None
        )

    def _part(self, call: Call | None) -> CallLedger | None:
        """The sub-ledger of `call`'s criticality; None without a split, without a call, or for a call an
        earlier run left in `Defer`'s file (in the totals only: no part counted its launch)."""
        if self.split is None or call is None or call.recovered:
            return None
        return self.split[criticality_of(call.headers)]

    @property
    def histogram(self) -> HdrHistogram:
        """Every answered call's latency in µs, from its scheduled launch."""
        if self._unrecorded:
            self._record_pending()
        return self._histogram

    def _record_pending(self) -> None:
        record_batch(self._histogram, self._unrecorded)
        self._unrecorded = []

    @property
    def finished(self) -> int:
        return self.ok + self.server_errors + self.shed + self.unfinished

    def launch(self, call: Call | None = None) -> None:
        self.launched += 1
        if self.split is not None and (part := self._part(call)) is not None:  # no call without a mix
            part.launch()

    def skip(self, slots: int) -> None:
        self.skipped += slots

    def finish(self, outcome: Outcome) -> None:
        """Count `outcome` as the final one of its call (or as pending, when `Defer` kept it)."""
        if self.split is not None and (part := self._part(outcome.call)) is not None:
            part.finish(outcome)
        self._finish_here(outcome)

    def _finish_here(self, outcome: Outcome) -> None:
        """Once per call, so it is written for speed: one read of each field, the latency only appended."""
        error = outcome.error
        if error is not None and isinstance(error, Shed):
            if isinstance(error, Deferred):
                self.pending += 1
                return
            self.shed += 1
            cause = error.cause
            self.shed_by_cause[cause] = self.shed_by_cause.get(cause, 0) + 1
            return
        latency = outcome.finished_at - outcome.call.launched_at  # `Outcome.latency`
        latency_us = max(LOWEST_US, round(latency * 1_000_000))
        unrecorded = self._unrecorded
        unrecorded.append(min(latency_us, HIGHEST_US))
        if len(unrecorded) >= RECORD_BATCH:
            self._record_pending()
        if error is None:
            self.ok += 1
            status = outcome.status or 0
            if 200 <= status < 300 and latency * 1000.0 <= self.slo_ms:
                self.slo_ok += 1
        else:
            self.server_errors += 1
            kind = error.kind
            self.errors_by_kind[kind] = self.errors_by_kind.get(kind, 0) + 1

    def abandon(self, call: Call | None = None) -> None:
        """A call still in flight when the drain ran out: it ends here, unanswered."""
        self.unfinished += 1
        if (part := self._part(call)) is not None:
            part.abandon()

    def replayed_final(self, outcome: Outcome) -> None:
        """A deferred call's replay ended: `outcome` is its final outcome, timed from the first launch."""
        if (part := self._part(outcome.call)) is not None:
            part.replayed_final(outcome)
        if self.pending <= 0:
            return  # already counted unfinished by `abandon_pending`: it ends once
        self.pending -= 1
        self._finish_here(outcome)

    def expire(self, outcome: Outcome) -> None:
        """A deferred call grew too old and was never sent."""
        if (part := self._part(outcome.call)) is not None:
            part.expire(outcome)
        if self.pending <= 0:
            return
        self.pending -= 1
        self._finish_here(outcome)  # a shed, cause defer-expired

    def recover(self, calls: int) -> None:
        """Deferred calls an earlier run left on disk: this run replays them, so it counts them."""
        self.launched += calls
        self.pending += calls

    def abandon_pending(self) -> int:
        """The drain ran out with deferred calls still queued: unfinished here, kept on disk."""
        for part in (self.split or {}).values():
            part.abandon_pending()
        left, self.pending = self.pending, 0
        self.unfinished += left
        self.kept += left
        return left

    @property
    def lost(self) -> int:
        """Calls neither served nor kept on disk for a later run. Read it after the drain: mid-run it
        also counts the calls still in flight or pending."""
        return self.launched - self.ok - self.kept

    def encoded_histogram(self) -> str:
        return encode_histogram(self.histogram)
