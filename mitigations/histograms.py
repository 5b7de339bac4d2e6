"""HdrHistogram's compact text form, the one way a histogram travels: from a worker to the master, and
from a policy's gauges (`Defer.replay_delays`) to the board, where `locust_plugin.ledger` merges them.

`record_batch` is the hot path's recording: hdrh's `record_value` is pure Python (about 1.7 µs a value,
most of it the bucket arithmetic spread over four method calls), so a ledger that times every call
keeps the values in a list and adds them here, in one pass, when someone reads the histogram.
"""

from __future__ import annotations

from collections.abc import Sequence

from hdrh.histogram import HdrHistogram


def encode_histogram(histogram: HdrHistogram) -> str:
    """The histogram as ASCII text; empty for an empty histogram."""
    if not histogram.get_total_count():
        return ""
    encoded = histogram.encode()
    return encoded.decode("ascii") if isinstance(encoded, bytes) else encoded


def record_batch(histogram: HdrHistogram, values: Sequence[int]) -> None:
    """`histogram.record_value(v)` for every v, with the same counts, total, min and max afterwards
    (so the same encoding), in one pass. Every value must be an int from 0 to the histogram's highest
    trackable value: callers clamp first, as `CallLedger.finish` does."""
    if not values:
        return
    counts = histogram.counts
    mask = histogram.sub_bucket_mask
    unit = histogram.unit_magnitude
    half_magnitude = histogram.sub_bucket_half_count_magnitude
    half = histogram.sub_bucket_half_count
    shift = unit + half_magnitude + 1
    # hdrh's `_counts_index_for`: bucket = bit_length(v | mask) - shift (its `64 - clz`), then the
    # sub-bucket v >> (bucket + unit), offset into the flat counts array.
    for value in values:
        bucket = (value | mask).bit_length() - shift
        counts[((bucket + 1) << half_magnitude) + (value >> (bucket + unit)) - half] += 1
    histogram.total_count += len(values)
    histogram.min_value = min(histogram.min_value, min(values))
    histogram.max_value = max(histogram.max_value, max(values))
