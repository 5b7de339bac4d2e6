"""Every client knob as a Locust command-line option, editable in the web UI, with the seed's defaults.

One table (`OPTIONS`) is the single source: it registers the options with Locust's parser, documents
them, and re-validates values at test start (the web UI can change them after start-up). Each option
has a parser that turns text into a value or raises `ValueError` with one readable line.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mitigations.defer_store import default_directory
from mitigations.transport import HTTP_BACKENDS


class OptionError(ValueError):
    """A bad option value; its message is the one line a user sees."""


# -- value parsers: text in, value out, or one clear line ----------------------------------------------------


def _number(text: object, kind: type) -> Any:
    try:
        return kind(str(text).strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a {'whole number' if kind is int else 'number'}") from None


def positive_number(text: object) -> float:
    value = _number(text, float)
    if not value > 0:
        raise ValueError(f"{text!r} must be greater than 0")
    return value


def non_negative_number(text: object) -> float:
    value = _number(text, float)
    if not value >= 0:
        raise ValueError(f"{text!r} must be 0 or more")
    return value


def positive_int(text: object) -> int:
    value = _number(text, int)
    if value < 1:
        raise ValueError(f"{text!r} must be 1 or more")
    return value


def non_negative_int(text: object) -> int:
    value = _number(text, int)
    if value < 0:
        raise ValueError(f"{text!r} must be 0 or more")
    return value


def millis(text: object) -> int:
    """Milliseconds, 0 or more. 0 usually means 'off', as in the seed."""
    return non_negative_int(text)


def percent(text: object) -> float:
    value = _number(text, float)
    if not 0 < value <= 100:
        raise ValueError(f"{text!r} must be a percentage in (0, 100]")
    return value


def boolean(text: object) -> bool:
    if isinstance(text, bool):
        return text
    lowered = str(text).strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"{text!r} is not true or false")


def choice(*allowed: str) -> Callable[[object], str]:
    def parse(text: object) -> str:
        value = str(text).strip()
        if value not in allowed:
            raise ValueError(f"{text!r} is not one of {', '.join(allowed)}")
        return value

    parse.__name__ = "choice"
    return parse


def folder(text: object) -> str:
    """A directory path; it is created when first used."""
    value = str(text).strip()
    if not value:
        raise ValueError("an empty path is not a folder")
    return value


def window(text: object) -> tuple[str, float]:
    """A breaker window: `10s` is the last 10 seconds, `100` is the last 100 calls."""
    raw = str(text).strip().lower()
    try:
        if raw.endswith("s"):
            seconds = float(raw[:-1])
            if seconds > 0:
                return ("time", seconds)
        else:
            calls = int(raw)
            if calls > 0:
                return ("count", float(calls))
    except ValueError:
        pass
    raise ValueError(f"{text!r} is not a window: use seconds like 10s or a call count like 100")


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


OPTIONS: tuple[Option, ...] = (
    # the launcher
    Option("--launch-rate", positive_number, "100", "requests launched per second by each user (seed: 100)"),
    Option("--arrival", choice("open", "closed"), "open",
           "open: launch on schedule whatever happens (the seed); closed: wait for each response"),
    Option("--path", str, "/doWork", "path each request asks for"),
    Option("--http-client", choice(*HTTP_BACKENDS), "fast",
           "fast: geventhttpclient (as FastHttpUser); requests: requests/urllib3 (as HttpUser)"),
    # throttle (MAX_CONCURRENT)
    Option("--max-concurrent", positive_int, "16", "ThrottledClient: most requests in flight at once"),
    Option("--throttle-mode", choice("cancel", "queue"), "cancel",
           "cancel: drop over the cap at once (the seed); queue: wait in a bounded queue"),
    Option("--queue-size", positive_int, "64", "queue mode: most requests waiting for a slot"),
    Option("--queue-timeout-ms", positive_int, "1000", "queue mode: longest wait for a slot before shedding"),
    # circuit breaker
    Option("--breaker-mode", choice("recent-error", "rate"), "recent-error",
           "recent-error: pause after any error (the seed); rate: closed/open/half-open on failure rate"),
    Option("--recent-error-delay-ms", positive_int, "2000", "recent-error: pause after the last error"),
    Option("--failure-rate-threshold", percent, "50", "rate: failure percentage that opens the breaker"),
    Option("--breaker-window", window, "10s", "rate: sliding window, seconds (10s) or calls (100)"),
    Option("--min-calls", positive_int, "20", "rate: calls in the window before the rate counts"),
    Option("--open-ms", positive_int, "5000", "rate: how long the breaker stays open"),
    Option("--half-open-calls", positive_int, "5", "rate: probe calls allowed while half-open"),
    Option("--slow-call-ms", millis, "0", "rate: a call slower than this counts as slow; 0 turns it off"),
    # socket pool (maxSockets)
    Option("--max-sockets", positive_int, "16", "PooledClient: most sockets open to the host at once"),
    Option("--keep-alive", boolean, "false", "reuse sockets between requests (the seed did not)"),
    # timeouts (REQUEST_TIMEOUT)
    Option("--connect-timeout-ms", positive_int, "3000",
           "every client: longest wait to connect (stands in for the kernel's SYN-retry limit)"),
    Option("--read-timeout-ms", positive_int, "1000", "TimeoutClient: longest wait for each read"),
    Option("--request-timeout-ms", positive_int, "2000",
           "TimeoutClient: total deadline counted from launch, socket queueing included"),
    # adaptive concurrency limit
    Option("--adaptive-algorithm", choice("gradient", "aimd"), "gradient",
           "AdaptiveClient: gradient (latency-based, Gradient2/Envoy) or aimd (loss-based)"),
    Option("--adaptive-mode", choice("cancel", "queue"), "cancel",
           "AdaptiveClient: over the limit, shed at once or queue briefly"),
    Option("--adaptive-queue-timeout-ms", positive_int, "50", "AdaptiveClient queue mode: longest wait"),
    Option("--adaptive-initial-limit", positive_int, "10", "AdaptiveClient: starting limit"),
    Option("--adaptive-min-limit", positive_int, "3", "AdaptiveClient: lowest limit"),
    Option("--adaptive-max-limit", positive_int, "200", "AdaptiveClient: highest limit"),
    Option("--lag-threshold-ms", millis, "70",
           "AdaptiveClient: server X-Server-Lag-Ms above this is congestion; 0 ignores the header"),
    # client-side adaptive throttling (SRE book)
    Option("--sre-k", positive_number, "2",
           "SreThrottleClient: K in max(0, (requests - K*accepts)/(requests+1))"),
    Option("--sre-window-s", positive_number, "120",
           "SreThrottleClient: sliding window of requests and accepts"),
    # retries
    Option("--retry-attempts", positive_int, "3",
           "RetryClient: most attempts per request, the first included"),
    Option("--retry-base-ms", millis, "50", "RetryClient: full-jitter backoff base"),
    Option("--retry-cap-ms", millis, "2000", "RetryClient: full-jitter backoff cap"),
    Option("--retry-budget", percent, "10", "RetryClient: retries as a percentage of requests, at most"),
    # accounting: what counts as good, and how a test ends
    Option("--slo-ms", positive_number, "1000",
           "every client: a 2xx answered within this many ms of its scheduled launch is SLO goodput"),
    Option("--drain-s", non_negative_number, "10",
           "every client: at the end of a test, wait this long for requests in flight before counting "
           "them unfinished (Locust's --stop-timeout wins when set)"),
    # defer (a throttle that drops nothing)
    Option("--defer-dir", folder, str(default_directory()),
           "DeferredClient: folder of the durable queues, one SQLite file per client class"),
    Option("--defer-max-age-s", positive_number, "60",
           "DeferredClient: a queued call older than this (from launch) is expired, never sent"),
    Option("--defer-max-queue", positive_int, "10000",
           "DeferredClient: most calls queued; beyond, shed as defer-full"),
    Option("--defer-priority", choice("fresh", "deferred"), "fresh",
           "DeferredClient: fresh calls take free slots first, or deferred calls (oldest first) do"),
)

_BY_DEST = {option.dest: option for option in OPTIONS}


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
            help=f"{option.help} (default {option.default})",
            include_in_web_ui=True,
        )


def read(parsed_options: Any | None, dest: str) -> Any:
    """One option's value, re-validated: the web UI may have replaced it with raw text."""
    option = _BY_DEST[dest]
    raw = getattr(parsed_options, dest, None) if parsed_options is not None else None
    if raw is None:
        raw = option.default
    if isinstance(raw, tuple):  # a window that argparse already parsed
        return raw
    try:
        return option.parse(raw)
    except ValueError as exc:
        raise OptionError(f"{option.flag}: {exc}") from None
