"""The ledger records latencies in batches (`mitigations.histograms.record_batch`) instead of one
`record_value` a call. What a reader sees must not change by a byte: the same counts, total, min and max,
so the same encoding in the snapshots, the CSV and the golden outputs."""

from __future__ import annotations

import random

from hdrh.histogram import HdrHistogram

from locust_plugin.ledger import HIGHEST_US, LOWEST_US, RECORD_BATCH, CallLedger, new_histogram
from mitigations.core import Call, ConnectionReset, Outcome, ThrottleRejected
from mitigations.histograms import record_batch

# Bucket edges of a 3-significant-digit histogram (sub-buckets of 2048), and the ends of the range.
EDGES = [0, 1, 2, 1023, 1024, 2047, 2048, 2049, 4095, 4096, 8191, 8192, 999_999, HIGHEST_US - 1, HIGHEST_US]


def one_by_one(values: list[int]) -> HdrHistogram:
    histogram = new_histogram()
    for value in values:
        histogram.record_value(value)
    return histogram


def same(a: HdrHistogram, b: HdrHistogram) -> bool:
    return (a.encode(), a.get_total_count(), a.get_min_value(), a.get_max_value()) == (
        b.encode(), b.get_total_count(), b.get_min_value(), b.get_max_value()
    )  # fmt: skip


def test_a_batch_lands_exactly_where_record_value_puts_each_value():
    rng = random.Random(7)
    values = EDGES + [int(10 ** rng.uniform(0, 9.55)) for _ in range(5000)]
    values = [min(value, HIGHEST_US) for value in values]
    rng.shuffle(values)
    batched = new_histogram()
    record_batch(batched, values[:1234])
    record_batch(batched, [])
    record_batch(batched, values[1234:])
    assert same(batched, one_by_one(values))
    for value in EDGES:  # each edge alone: its own bucket, min and max
        alone = new_histogram()
        record_batch(alone, [value])
        assert same(alone, one_by_one([value])), value


def test_the_ledger_histogram_holds_every_answer_whenever_it_is_read():
    """Read between calls, and past a full batch: always what recording each answer at once gave."""
    ledger = CallLedger(slo_ms=100)
    expected: list[int] = []
    rng = random.Random(11)
    for i in range(RECORD_BATCH + 300):
        call = Call("GET", "/doWork", launched_at=50.0)
        latency = rng.choice([0.0, 1e-7, 0.0123, 0.2, rng.uniform(0, 5), 4000.0])
        kind = i % 10
        if kind == 9:  # shed: no answer, no latency
            ledger.finish(Outcome(call=call, finished_at=50.0 + latency, error=ThrottleRejected()))
            continue
        error = ConnectionReset() if kind == 8 else None
        status = None if error else 200
        ledger.finish(Outcome(call=call, finished_at=50.0 + latency, status=status, error=error))
        expected.append(min(max(LOWEST_US, round(((50.0 + latency) - 50.0) * 1_000_000)), HIGHEST_US))
        if i in (0, 1, 17, RECORD_BATCH - 1, RECORD_BATCH + 5):
            assert same(ledger.histogram, one_by_one(expected)), i
    assert same(ledger.histogram, one_by_one(expected))
    assert ledger.encoded_histogram() == one_by_one(expected).encode().decode("ascii")
    assert ledger.histogram.get_total_count() == ledger.ok + ledger.server_errors
