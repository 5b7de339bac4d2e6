"""The target server's options: each one described once, with how a value of it is checked and parsed.

`OPTIONS` is the single table: it gives each option's CLI flag (`--sync-work-ms`), its environment variable
(`TARGET_SYNC_WORK_MS`), its help text, its allowed range, and whether `/admin/config` (`runtime`) or the
`/doWork` query string (`query`) may set it. `Option.check` and `Option.parse` are the one place a value is
judged, so a bad value reads the same whether it came from a flag, the environment, a test, a query or an
admin request (`ConfigError`: the option's name and what is allowed).

The value object built from these is `target_server.config.Config`; the flags and env vars are read by
`target_server.config_sources`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from target_server.numbers import parse_float, parse_int

ENV_PREFIX = "TARGET_"
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", ""})
# A listen address: an IPv4/IPv6 literal or a host name, in ASCII (anything else fails at bind time).
HOST_TEXT = re.compile(r"[A-Za-z0-9._:%-]{1,255}", re.ASCII)


class ConfigError(ValueError):
    """A bad option value. `option` is the field name; the message says what is allowed."""

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"{option}: {problem}")
        self.option = option
        self.problem = problem


@dataclass(frozen=True)
class Option:
    """One option: its type, its range and its help. `runtime` options can change through /admin/config."""

    name: str
    kind: type
    help: str
    low: float | None = None
    high: float | None = None
    low_exclusive: bool = False
    nullable: bool = False
    runtime: bool = False
    query: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    def allowed(self) -> str:
        """What a valid value looks like, in words, for error messages."""
        if self.kind is bool:
            return "a boolean (true/false, 1/0, yes/no, on/off)"
        noun = "an integer" if self.kind is int else "a number" if self.kind is float else "a string"
        if self.low is not None and self.high is not None and not self.low_exclusive:
            text = f"{noun} from {_num(self.low)} to {_num(self.high)}"
        elif self.low is not None:
            text = f"{noun} {'>' if self.low_exclusive else '>='} {_num(self.low)}"
            if self.high is not None:
                text += f" and <= {_num(self.high)}"
        else:
            text = noun
        return text + (" (or empty for none)" if self.nullable else "")

    def check(self, value: Any) -> Any:
        """Return `value` if it is allowed (ints are accepted for floats), else raise ConfigError."""
        if value is None and self.nullable:
            return None
        bad = ConfigError(self.name, f"must be {self.allowed()}, got {value!r}")
        if self.kind is bool:
            if not isinstance(value, bool):
                raise bad
            return value
        if self.kind is str:
            if not isinstance(value, str) or not value or not value.isprintable():
                raise bad
            if self.name == "host" and not HOST_TEXT.fullmatch(value):
                raise ConfigError(self.name, f"must be an IP address or host name, got {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad
        if self.kind is int and not isinstance(value, int):
            raise bad
        if isinstance(value, float) and not math.isfinite(value):
            raise bad
        if self.low is not None and (value <= self.low if self.low_exclusive else value < self.low):
            raise bad
        if self.high is not None and value > self.high:
            raise bad
        return float(value) if self.kind is float else value

    def parse(self, text: str) -> Any:
        """Turn a flag, env or query string into a checked value (ASCII digits only: see numbers.py)."""
        text = text.strip(" \t")
        if self.nullable and text == "":
            return None
        bad = ConfigError(self.name, f"must be {self.allowed()}, got {text!r}")
        if self.kind is bool:
            if text.lower() in TRUE_WORDS:
                return True
            if text.lower() in FALSE_WORDS:
                return False
            raise bad
        if self.kind is str:
            return self.check(text)
        try:
            return self.check(parse_int(text) if self.kind is int else parse_float(text))
        except (ValueError, ConfigError):
            raise bad from None


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


OPTIONS: tuple[Option, ...] = (
    Option("host", str, "address to listen on"),
    Option("port", int, "TCP port to listen on (0 picks a free one)", 0, 65535),
    Option(
        "expansion", int, "tasks each /doWork request runs in parallel", 1, 1000, runtime=True, query=True
    ),
    Option(
        "task_delay_ms",
        float,
        "each task first waits this long without blocking",
        0,
        60_000,
        runtime=True,
        query=True,
    ),
    Option(
        "sync_work_ms",
        float,
        "then busy-spins this long, blocking the loop",
        0,
        10_000,
        runtime=True,
        query=True,
    ),
    Option("lag_interval_ms", float, "how often the lag sampler wakes up (toobusy: 500)", 10, 60_000),
    Option("lag_smoothing", float, "weight of a new lag sample (toobusy: 1/3)", 0, 1, low_exclusive=True),
    Option(
        "max_lag_ms",
        float,
        "lag above which requests may be shed (toobusy: 70)",
        0,
        60_000,
        True,
        runtime=True,
    ),
    Option("reject_if_too_busy", bool, "shed /doWork with 503 while lag > max_lag_ms", runtime=True),
    Option(
        "priority_shedding",
        bool,
        "shed by criticality (header Hammerlab-Criticality: critical|sheddable, none = critical): "
        "sheddable requests from sheddable_lag_ms, critical ones from max_lag_ms; turns shedding on",
        runtime=True,
    ),
    Option(
        "sheddable_lag_ms",
        float,
        "with --priority-shedding: lag above which sheddable requests may be shed (empty: max_lag_ms / 2; "
        "at most max_lag_ms)",
        0,
        60_000,
        True,
        nullable=True,
        runtime=True,
    ),
    Option("retry_after_s", int, "Retry-After seconds sent with a too-busy 503", 0, 3600, runtime=True),
    Option("log_interval_ms", float, "status log period", 10, 60_000),
    Option("quiet", bool, "no status log"),
    Option(
        "max_sockets",
        int,
        "connections handled at once (a gevent pool); more wait in the backlog",
        1,
        100_000,
    ),
    Option("backlog", int, "listen queue length; past it, new connects time out", 0, 65535),
    Option(
        "status_port",
        int,
        "port of the status series listener, GET /stats/series (0 picks a free one, -1 turns it off)",
        -1,
        65535,
    ),
    Option(
        "header_timeout_s",
        float,
        "a request's line, headers and body must all arrive within this, else 408 and close",
        0.1,
        600,
    ),
    Option(
        "idle_timeout_s",
        float,
        "close a connection that starts no request for this long (keep-alive idle)",
        0.1,
        3600,
    ),
    Option(
        "max_work_ms",
        float,
        "cap on one request's blocking work, expansion x sync_work_ms (query and /admin/config too)",
        1,
        600_000,
    ),
    Option(
        "skip_abandoned",
        bool,
        "skip the CPU work of a /doWork request whose client has hung up (counted as abandoned)",
        runtime=True,
    ),
    Option(
        "latency_profile",
        str,
        "a measured latency distribution (JSON or CSV, docs/latency-profile.md) that /doWork reproduces "
        "instead of task_delay_ms and sync_work_ms",
        nullable=True,
    ),
    Option(
        "cpu_share",
        float,
        "with --latency-profile: the CPU-bound share of each request's latency (overrides the file's)",
        0,
        1,
        nullable=True,
    ),
    Option(
        "drop_expired",
        bool,
        "answer 504 at once, without the work, when a request's X-Request-Deadline-Ms has passed "
        "(checked on arrival and before the CPU-bound part; counted as expired)",
        runtime=True,
    ),
    Option("stats_dir", str, "shared dir for multi-worker /stats (auto under gunicorn)", nullable=True),
    Option("seed", int, "random seed for shedding and fault draws (empty: random)", 0, 2**63, nullable=True),
    Option(
        "otel",
        bool,
        "a server span per request, continuing the caller's W3C traceparent, exported as the standard "
        "OTEL_* variables say (docs/tracing.md; needs pip install 'hammerlab[otel]')",
    ),
)
OPTION_BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}
RUNTIME_OPTIONS: tuple[str, ...] = tuple(o.name for o in OPTIONS if o.runtime)
QUERY_OPTIONS: tuple[str, ...] = tuple(o.name for o in OPTIONS if o.query)
