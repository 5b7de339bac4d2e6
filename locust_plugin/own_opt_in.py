"""A worker's `--allow-remote` is its own: pinned at start-up, never taken from its master.

A Locust master sends its parsed options with every spawn message, and a worker copies every option
Locust itself does not define (Hammerlab's included) into its own `parsed_options` before the test
starts (locust/runners.py, `WorkerRunner.handle_message`, "spawn"). Left alone, a master started with
`--allow-remote` would hand that opt-in to every worker, and a worker whose own command line never
allowed it would load a host off its machine. The rule (mitigations/checked_url.py) is that the opt-in
comes only from the sending process's own command line or environment.

So at `init`, before the worker has taken any test from its master, this module pins the value the
process was started with: `parsed_options.allow_remote` then reads that value whatever is written into
the options later. Every reader (the host checks at start-up and test start, the transports, the
server sampler, the metrics scraper) goes on reading `parsed_options.allow_remote` and gets the
process's own answer. The other options a master sends (the launch rate, the SLO, the class's
mitigation settings) are the run's and are meant to be shared.
"""

from __future__ import annotations

import argparse
from typing import Any

from locust import events


class PinnedOptions(argparse.Namespace):
    """Parsed options whose `allow_remote` is fixed: `pin` makes a subclass per process whose property
    returns the value the process started with. A data descriptor on the class wins over the instance
    dict that `vars(options).update(...)` writes, and the value lives on the class, not in `vars()`, so
    it is never among the options a master sends on."""


def pin(options: Any) -> None:
    """Fix `options.allow_remote` at its current value for the life of the process."""
    if options is None or isinstance(options, PinnedOptions) or type(options) is not argparse.Namespace:
        return
    own = bool(vars(options).get("allow_remote", False))

    def read(_: Any) -> bool:
        return own

    def ignore(_: Any, __: object) -> None:
        """The opt-in is fixed at start-up (the web UI refuses to carry it, too)."""

    options.__class__ = type("PinnedOptions", (PinnedOptions,), {"allow_remote": property(read, ignore)})


@events.init.add_listener
def _pin_at_start_up(environment: Any, **_: Any) -> None:
    pin(environment.parsed_options)
