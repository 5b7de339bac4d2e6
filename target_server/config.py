"""The target server's configuration: one validated value object, built from flags, env vars or JSON.

Every option is described once in `OPTIONS`. That single table gives the CLI flag (`--sync-work-ms`), the
environment variable (`TARGET_SYNC_WORK_MS`), the help text, the allowed range, and whether `/admin/config`
may change it at run time. Validation happens in `Config.__post_init__`, so a bad value is refused whether it
came from the command line, the environment, a test or an admin request.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from target_server.faults import Fault, FaultError, parse_fault
from target_server.latency_profile import LatencyProfile, ProfileError, load_profile
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
FAULT_FLAG = "--fault"
FAULT_ENV = ENV_PREFIX + "FAULT"


@dataclass(frozen=True)
class Config:
    """Everything the server needs to start. Invalid values raise ConfigError at construction."""

    host: str = "127.0.0.1"
    port: int = 3000
    expansion: int = 1
    task_delay_ms: float = 20.0
    sync_work_ms: float = 10.0
    lag_interval_ms: float = 500.0
    lag_smoothing: float = 1 / 3
    max_lag_ms: float = 70.0
    reject_if_too_busy: bool = False
    priority_shedding: bool = False
    sheddable_lag_ms: float | None = None
    retry_after_s: int = 1
    log_interval_ms: float = 250.0
    quiet: bool = False
    max_sockets: int = 256
    backlog: int = 128
    status_port: int = 0
    header_timeout_s: float = 10.0
    idle_timeout_s: float = 5.0
    max_work_ms: float = 1000.0
    skip_abandoned: bool = True
    latency_profile: str | None = None
    cpu_share: float | None = None
    drop_expired: bool = False
    stats_dir: str | None = None
    seed: int | None = None
    otel: bool = False
    faults: tuple[Fault, ...] = field(default=())
    # loaded from latency_profile at construction (and carried over by with_changes)
    profile: LatencyProfile | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        for option in OPTIONS:
            object.__setattr__(self, option.name, option.check(getattr(self, option.name)))
        if not isinstance(self.faults, tuple) or not all(isinstance(f, Fault) for f in self.faults):
            raise ConfigError("faults", "must be a tuple of Fault")
        check_work(self.expansion, self.sync_work_ms, self.max_work_ms)
        check_shedding(self.max_lag_ms, self.sheddable_lag_ms)
        self._load_profile()

    def _load_profile(self) -> None:
        """Read --latency-profile (once: a copy keeps the loaded one). Raises ConfigError."""
        if self.latency_profile is None:
            if self.cpu_share is not None:
                raise ConfigError("cpu_share", "only means something with --latency-profile")
            object.__setattr__(self, "profile", None)
            return
        loaded = self.profile
        if loaded is None or loaded.source != self.latency_profile or (
            self.cpu_share is not None and loaded.cpu_share != self.cpu_share
        ):
            try:
                loaded = load_profile(self.latency_profile, self.cpu_share)
            except ProfileError as error:
                raise ConfigError("latency_profile", str(error)) from None
        if self.expansion != 1:
            raise ConfigError(
                "expansion", "must be 1 with --latency-profile (each request draws one latency)"
            )
        if loaded.max_work_ms > self.max_work_ms:
            raise ConfigError(
                "max_work_ms",
                f"the profile's slowest request blocks the loop for {loaded.max_work_ms:.10g} ms "
                f"(cpu_share x its largest latency), over the cap of {self.max_work_ms:.10g} ms",
            )
        object.__setattr__(self, "profile", loaded)

    def with_changes(self, changes: Mapping[str, Any]) -> Config:
        """A copy with some runtime options changed; anything else is refused by name."""
        for name in changes:
            if name not in RUNTIME_OPTIONS:
                raise ConfigError(
                    name, f"cannot be changed at run time; allowed: {', '.join(RUNTIME_OPTIONS)}"
                )
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The effective config for /stats: every option plus the start-up faults."""
        data: dict[str, Any] = {option.name: getattr(self, option.name) for option in OPTIONS}
        data["faults"] = [fault.to_json() for fault in self.faults]
        return data

    @classmethod
    def from_sources(cls, argv: Sequence[str] = (), env: Mapping[str, str] | None = None) -> Config:
        """Flags win over TARGET_* env vars, which win over defaults. Raises ConfigError naming the source."""
        args = build_parser().parse_args(list(argv))
        env = env or {}
        values: dict[str, Any] = {}
        for option in OPTIONS:
            flag_value = getattr(args, option.name)
            if flag_value is not None:
                values[option.name] = _parse_from(option, flag_value, option.flag)
            elif option.env in env:
                values[option.name] = _parse_from(option, env[option.env], option.env)
        texts = list(args.fault or [])
        source = FAULT_FLAG
        if not texts and env.get(FAULT_ENV, "").strip():
            texts = [t for t in env[FAULT_ENV].split(";") if t.strip()]
            source = FAULT_ENV
        try:
            values["faults"] = tuple(parse_fault(text) for text in texts)
        except FaultError as error:
            raise ConfigError(source, str(error)) from None
        try:
            return cls(**values)
        except ConfigError as error:  # each value passed parse(); this is a combination (the work cap)
            raise ConfigError(OPTION_BY_NAME[error.option].flag, error.problem) from None


def check_work(expansion: int, sync_work_ms: float, max_work_ms: float) -> None:
    """One request blocks the loop for expansion x sync_work_ms; past `max_work_ms` it would wedge the
    server (and delay SIGTERM) for that long, so the combination is refused wherever it is set."""
    total = expansion * sync_work_ms
    if total > max_work_ms:
        raise ConfigError(
            "max_work_ms",
            f"expansion x sync_work_ms = {expansion} x {sync_work_ms:.10g} = {total:.10g} ms is over the "
            f"cap of {max_work_ms:.10g} ms of blocking work per request (max_work_ms)",
        )


def check_shedding(max_lag_ms: float, sheddable_lag_ms: float | None) -> None:
    """Sheddable requests are shed first: their threshold may not be above the critical one."""
    if sheddable_lag_ms is not None and sheddable_lag_ms > max_lag_ms:
        raise ConfigError(
            "sheddable_lag_ms",
            f"must be at most max_lag_ms ({max_lag_ms:.10g}), so that sheddable requests are shed first; "
            f"got {sheddable_lag_ms:.10g}",
        )


def _parse_from(option: Option, text: str | bool, source: str) -> Any:
    if isinstance(text, bool):
        return text
    try:
        return option.parse(text)
    except ConfigError as error:
        raise ConfigError(source, error.problem) from None


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2, like every other config error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError("arguments", message)


def build_parser() -> OneLineParser:
    """Every option as a flag. Values stay strings here so that Option.parse can word the errors."""
    parser = OneLineParser(
        prog="python -m target_server",
        allow_abbrev=False,  # `--por 80` is a typo, not --port
        description="The Hammerlab target server: the seed's remote service, which knows how busy it is.",
        epilog=f"Every option also reads {ENV_PREFIX}<NAME> from the environment (flags win).",
    )
    defaults = Config()
    for option in OPTIONS:
        default = getattr(defaults, option.name)
        default = f"{default:.4g}" if isinstance(default, float) else default
        if option.kind is bool:
            parser.add_argument(
                option.flag,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"{option.help} [{option.env}, default {default}]",
            )
        else:
            parser.add_argument(
                option.flag,
                metavar=option.kind.__name__.upper(),
                default=None,
                help=f"{option.help} [{option.env}, default {default}]",
            )
    parser.add_argument(
        FAULT_FLAG,
        action="append",
        metavar="KIND[:key=value,...]",
        help=(
            "inject a fault on /doWork, repeatable: error|slow|reset|hang|outage with keys rate, "
            "duration_s, delay_ms (slow), status (error, outage); e.g. error:rate=0.2 slow:delay_ms=300 "
            f"outage:duration_s=10 [{FAULT_ENV}, ';'-separated]"
        ),
    )
    return parser
