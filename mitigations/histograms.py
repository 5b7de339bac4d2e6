"""HdrHistogram's compact text form, the one way a histogram travels: from a worker to the master, and
from a policy's gauges (`Defer.replay_delays`) to the board, where `locust_plugin.ledger` merges them."""

from __future__ import annotations

from hdrh.histogram import HdrHistogram


def encode_histogram(histogram: HdrHistogram) -> str:
    """The histogram as ASCII text; empty for an empty histogram."""
    if not histogram.get_total_count():
        return ""
    encoded = histogram.encode()
    return encoded.decode("ascii") if isinstance(encoded, bytes) else encoded
