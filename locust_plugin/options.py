"""Every client knob as a Locust command-line option, editable in the web UI, with the seed's defaults.

One table (`OPTIONS`) is the single source: it registers the options with Locust's parser, documents
them, and re-validates values at test start (the web UI can change them after start-up). Each option
has a strict parser (`values`) that turns text into a value inside the option's documented range
(docs/limits.md) or raises `ValueError` with one readable line.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from locust_plugin.values import (
    body,
    body_file,
    boolean,
    choice,
    criticality_mix,
    header,
    number,
    path,
    whole,
    window,
)
from mitigations.defer_checks import default_directory
from mitigations.request import METHODS, RequestSpec, parse_headers
from mitigations.transport import HTTP_BACKENDS


class OptionError(ValueError):
    """A bad option value; its message is the one line a user sees."""


# -- value parsers this module adds to `values`


def methods(text: object) -> tuple[str, ...]:
    """HTTP methods, comma-separated (`GET,PUT`), or `*` for every method. A tuple, so the web UI keeps
    the text (see `_argparse_type`); `("*",)` means every method."""
    names = tuple(sorted({part.strip().upper() for part in str(text).split(",") if part.strip()}))
    if names == ("*",):
        return names
    if not names or not all(name.isalpha() and name.isascii() for name in names):
        raise ValueError(f"{text!r} is not a list of HTTP methods like GET,PUT (or * for every method)")
    return names


def folder(text: object) -> str:
    """A directory path; it is created when first used. Empty: the option's default folder."""
    value = str(text).strip()
    if "\x00" in value:
        raise ValueError(f"{text!r} is not a folder path")
    return value


# -- the table --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    flag: str
    parse: Callable[[object], Any]
    default: str
    help: str

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def allowed(self) -> str:
        """The documented range, e.g. '1 to 10,000 ms' (empty for words and true/false)."""
        return getattr(self.parse, "allowed", "")

    @property
    def full_help(self) -> str:
        allowed = f"{self.allowed}; " if self.allowed else ""
        return f"{self.help} ({allowed}default {self.default})"


MAX_LAUNCH_RATE = 100_000.0  # per user; what one process sustains is far lower (see docs/limits.md)
MIN_LAUNCH_RATE = 0.01
MAX_WAIT_MS = 600_000  # ten minutes: the longest timeout, pause or cap any option takes
MAX_SLOTS = 10_000  # concurrency caps, socket caps and limiter bounds
MAX_COUNT = 100_000  # queue sizes and call counts

ms = "ms"
percent = number(0.01, 100.0, "%")
slots = whole(1, MAX_SLOTS)

# One option a line or two, as a table: ruff format would spread each over five.
# fmt: off
OPTIONS: tuple[Option, ...] = (
    # the launcher
    Option("--launch-rate", number(MIN_LAUNCH_RATE, MAX_LAUNCH_RATE, "requests/s per user"), "100",
           "requests launched per second by each user (seed: 100)"),
    Option("--arrival", choice("open", "closed"), "open",
           "open: launch on schedule whatever happens (the seed); closed: wait for each response"),
    Option("--path", path, "/doWork", "path each request asks for (starts with /; never a host)"),
    Option("--method", choice(*METHODS), "GET", "HTTP method of each request"),
    Option("--body", body, "", "request body text (at most 1 MiB); empty: no body"),
    Option("--body-file", body_file, "", "send this file's bytes as the body (at most 1 MiB); empty: none"),
    Option("--http-client", choice(*HTTP_BACKENDS), "fast",
           "fast: geventhttpclient (as FastHttpUser); requests: requests/urllib3 (as HttpUser)"),
    # throttle (MAX_CONCURRENT)
    Option("--max-concurrent", slots, "16", "ThrottledClient: most requests in flight at once"),
    Option("--throttle-mode", choice("cancel", "queue"), "cancel",
           "cancel: drop over the cap at once (the seed); queue: wait in a bounded queue"),
    Option("--queue-size", whole(1, MAX_COUNT), "64", "queue mode: most requests waiting for a slot"),
    Option("--queue-timeout-ms", whole(1, MAX_WAIT_MS, ms), "1000",
           "queue mode: longest wait for a slot before shedding"),
    # circuit breaker
    Option("--breaker-mode", choice("recent-error", "rate"), "recent-error",
           "recent-error: pause after any error (the seed); rate: closed/open/half-open on failure rate"),
    Option("--recent-error-delay-ms", whole(1, MAX_WAIT_MS, ms), "2000",
           "recent-error: pause after the last error"),
    Option("--failure-rate-threshold", percent, "50", "rate: failure percentage that opens the breaker"),
    Option("--breaker-window", window, "10s", "rate: sliding window, seconds (10s) or calls (100)"),
    Option("--min-calls", whole(1, MAX_COUNT), "20", "rate: calls in the window before the rate counts"),
    Option("--open-ms", whole(1, MAX_WAIT_MS, ms), "5000", "rate: how long the breaker stays open"),
    Option("--half-open-calls", slots, "5", "rate: probe calls allowed while half-open"),
    Option("--half-open-max-wait-ms", whole(1, MAX_WAIT_MS, ms, zero="forever"), "5000",
           "rate: longest time probes may hold the breaker half-open before it opens again; 0: forever"),
    Option("--slow-call-ms", whole(1, MAX_WAIT_MS, ms, zero="off"), "0",
           "rate: a call slower than this counts as slow; 0 turns it off"),
    # socket pool (maxSockets)
    Option("--max-sockets", slots, "16", "PooledClient: most sockets open to the host at once"),
    Option("--keep-alive", boolean, "false", "reuse sockets between requests (the seed did not)"),
    # timeouts (REQUEST_TIMEOUT)
    Option("--connect-timeout-ms", whole(1, MAX_WAIT_MS, ms), "3000",
           "every client: longest wait to connect (stands in for the kernel's SYN-retry limit)"),
    Option("--read-timeout-ms", whole(1, MAX_WAIT_MS, ms), "1000",
           "TimeoutClient: longest wait for each read"),
    Option("--request-timeout-ms", whole(1, MAX_WAIT_MS, ms), "2000",
           "TimeoutClient: total deadline counted from launch, socket queueing included"),
    Option("--attempt-timeout-ms", whole(1, MAX_WAIT_MS, ms), "1000",
           "NaiveRetryClient: each attempt's own timeout (connect and answer); every retry gets a new one"),
    Option("--min-wire-share", number(1.0, 99.0, "% of the deadline", zero="off"), "50",
           "TimeoutClient: send only with this percentage of the deadline left, else shed it; 0: off"),
    Option("--count-429", boolean, "true",
           "a 429 counts against the server (breaker, adaptive limit, SRE throttle); false: a plain 4xx"),
    # adaptive concurrency limit
    Option("--adaptive-algorithm", choice("knee", "gradient", "aimd", "vegas"), "gradient",
           "AdaptiveClient: knee (settles where throughput stops growing; the SLO is a ceiling), "
           "gradient (the SLO's share is the target), aimd (loss-based) or vegas (queue estimate)"),
    Option("--adaptive-slo-share", number(1.0, 100.0, "%", zero="ignore the SLO"), "50",
           "AdaptiveClient: knee: a windowed p99 past this share of --slo-ms cuts at once; the others: "
           "hold the windowed p99 under it; 0: ignore the SLO (gradient: the old no-load-RTT rule)"),
    Option("--adaptive-tolerance", number(1.0, 1000.0, "% of min RTT"), "10",
           "AdaptiveClient knee: the queue allowed, as a share of the probed minimum RTT"),
    Option("--adaptive-dither", number(1.0, 50.0, "% of the limit", zero="off"), "0",
           "AdaptiveClient knee: swing the limit +- this share by window and steer on the measured "
           "throughput elasticity (for soft knees); 0: off"),
    Option("--adaptive-elasticity", number(1.0, 99.0, "%"), "15",
           "AdaptiveClient knee with --adaptive-dither: the knee is where 1 % more calls in flight bring "
           "less than this % more answers; lower settles deeper (more goodput, more queue)"),
    Option("--adaptive-fleet-size", slots, "1",
           "AdaptiveClient knee with --adaptive-dither: client instances sharing the upstream (each sees "
           "1/N of the queue it adds)"),
    Option("--adaptive-probe-interval-s", number(1.0, 3600.0, "s"), "30",
           "AdaptiveClient knee: seconds between two min-RTT probes (the limit pinned low briefly)"),
    Option("--adaptive-mode", choice("cancel", "queue"), "cancel",
           "AdaptiveClient: over the limit, shed at once or queue briefly"),
    Option("--adaptive-queue-timeout-ms", whole(1, MAX_WAIT_MS, ms), "50",
           "AdaptiveClient queue mode: longest wait"),
    Option("--adaptive-initial-limit", slots, "10", "AdaptiveClient: starting limit"),
    Option("--adaptive-min-limit", slots, "3", "AdaptiveClient: lowest limit"),
    Option("--adaptive-max-limit", slots, "200", "AdaptiveClient: highest limit"),
    Option("--lag-threshold-ms", whole(1, MAX_WAIT_MS, ms, zero="ignore the header"), "0",
           "AdaptiveClient: server X-Server-Lag-Ms above this is congestion; 0 (the default) ignores it"),
    # client-side adaptive throttling (SRE book)
    Option("--sre-k", number(1.0, 100.0), "2",
           "SreThrottleClient: K in max(0, (requests - K*accepts)/(requests+1))"),
    Option("--sre-window-s", number(1.0, 3600.0, "s"), "120",
           "SreThrottleClient: sliding window of requests and accepts"),
    # retries
    Option("--retry-attempts", whole(1, 100), "3",
           "RetryClient: most attempts per request, the first included"),
    Option("--retry-base-ms", whole(0, MAX_WAIT_MS, ms), "50",
           "RetryClient: full-jitter backoff base (0: retry at once)"),
    Option("--retry-cap-ms", whole(0, MAX_WAIT_MS, ms), "2000", "RetryClient: full-jitter backoff cap"),
    Option("--retry-budget", percent, "10", "RetryClient: retries as a percentage of requests, at most"),
    Option("--retry-methods", methods, "GET,HEAD,OPTIONS,PUT,DELETE,TRACE",
           "RetryClient: methods that may be sent twice (connect errors: any method); * for every method"),
    # hedged requests
    Option("--hedge-delay-ms", whole(1, MAX_WAIT_MS, ms, zero="adaptive"), "0",
           "HedgedClient, NaiveHedgeClient: send a second copy of a call unanswered after this long; "
           "0: adaptive, --hedge-percentile of recent latency"),
    Option("--hedge-percentile", number(50.0, 99.9, "%"), "95",
           "HedgedClient, NaiveHedgeClient: the adaptive hedge delay is this percentile of the last "
           "--hedge-window latencies"),
    Option("--hedge-window", whole(20, MAX_COUNT), "1000",
           "HedgedClient, NaiveHedgeClient: how many recent latencies the adaptive delay reads"),
    Option("--hedge-budget", number(0.01, 100.0, "%", zero="no budget (naive hedging)"), "5",
           "HedgedClient: hedges as a percentage of calls, at most; 0: no budget (NaiveHedgeClient: none)"),
    Option("--hedge-pause-ms", whole(1, MAX_WAIT_MS, ms, zero="never pause (naive hedging)"), "2000",
           "HedgedClient: no hedges for this long after a sign of overload (503, 429, a shed, a latency "
           "jump, a falling adaptive limit); 0: never pause (NaiveHedgeClient never does)"),
    # criticality (docs/criticality.md)
    Option("--criticality-mix", criticality_mix, "off",
           "every client: critical=SHARE labels that share of a class's calls critical and the rest "
           "sheddable (header Hammerlab-Criticality); the throttle and adaptive limit refuse sheddable "
           "calls first; off: no header, all calls critical"),
    Option("--shed-sheddable-first", boolean, "true",
           "every client: the throttle, adaptive limit and socket pool honour the criticality labels; "
           "false: labels sent and counted, honoured by no client limiter (a contrast run)"),
    # accounting: what counts as good, and how a test ends
    Option("--slo-ms", number(1.0, MAX_WAIT_MS, ms), "1000",
           "every client: a 2xx answered within this many ms of its scheduled launch is SLO goodput"),
    Option("--drain-s", number(0.1, 120.0, "s", zero="no drain"), "10",
           "every client: at the end of a test, wait this long for requests in flight before counting "
           "them unfinished (Locust's --stop-timeout wins when set)"),
    # defer (a throttle that drops nothing)
    Option("--defer-dir", folder, "",
           f"DeferredClient: folder of the durable queues, one SQLite file per client class; empty: "
           f"{default_directory()}/<host>_<port>, yours alone (0700) and the target's"),
    Option("--defer-max-age-s", number(0.1, 86_400.0, "s"), "60",
           "DeferredClient: a queued call older than this (from launch) is expired, never sent"),
    Option("--defer-max-queue", whole(1, 10_000_000), "10000",
           "DeferredClient: most calls queued; beyond, shed as defer-full"),
    Option("--defer-priority", choice("fresh", "deferred"), "fresh",
           "DeferredClient: fresh calls take free slots first, or deferred calls (oldest first) do"),
)
# fmt: on

BY_DEST = {option.dest: option for option in OPTIONS}


def _argparse_type(option: Option) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            value = option.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        # A window stays text: the web UI rebuilds values with type(old)(text), tuple("10s") is 3 chars,
        # and workers get options through msgpack (no tuples). `read` parses it.
        return text if isinstance(value, tuple) else value

    convert.__name__ = option.dest
    return convert


def add_arguments(parser: Any) -> None:
    """Register every option on Locust's parser (listener for `init_command_line_parser`)."""
    # Straight on the parser: argument groups drop Locust's `include_in_web_ui`.
    for option in OPTIONS:
        parser.add_argument(
            option.flag,
            type=_argparse_type(option),
            default=_argparse_type(option)(option.default),
            help=option.full_help.replace("%", "%%"),  # argparse formats help with %
            include_in_web_ui=True,
        )
    parser.add_argument(
        "--header",
        action="append",
        type=_header_type,
        metavar="'NAME: VALUE'",
        help="a header every request carries; repeat the flag for more (never Host or the framing ones)",
    )


def _header_type(text: str) -> str:
    try:
        header(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def request_spec(parsed_options: Any | None) -> RequestSpec:
    """The request every call sends: --method, --path, every --header, --body or --body-file.
    Raises OptionError with one line."""
    try:
        headers = parse_headers(getattr(parsed_options, "header", None) or ())
        return RequestSpec.build(
            read(parsed_options, "method"),
            read(parsed_options, "path"),
            headers,
            read(parsed_options, "body"),
            read(parsed_options, "body_file"),
        )
    except OptionError:
        raise
    except ValueError as exc:
        raise OptionError(str(exc)) from None


def read(parsed_options: Any | None, dest: str) -> Any:
    """One option's value, re-validated: the web UI may have replaced it with raw text."""
    option = BY_DEST[dest]
    raw = getattr(parsed_options, dest, None) if parsed_options is not None else None
    if raw is None:
        raw = option.default
    if isinstance(raw, tuple):  # a window that argparse already parsed
        return raw
    try:
        return option.parse(raw)
    except ValueError as exc:
        raise OptionError(f"{option.flag}: {exc}") from None
