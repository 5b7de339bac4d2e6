"""Where the target's config comes from: its flags, then TARGET_* env vars, then the defaults.

A module of its own because reading the command line is a different idea from what a valid config is:
`python -m target_server` reads flags and env vars, gunicorn's app factory the env vars alone, while tests
and `/admin/config` build a `Config` directly. Every value is still judged by its option
(`target_server.options`), so a bad one reads the same here; what this adds is the source's name in the
message (`--port: ...`, `TARGET_PORT: ...`) and a one-line argparse.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from target_server.config import Config
from target_server.faults import FaultError, parse_fault
from target_server.options import ENV_PREFIX, OPTION_BY_NAME, OPTIONS, ConfigError, Option

FAULT_FLAG = "--fault"
FAULT_ENV = ENV_PREFIX + "FAULT"


def config_from_sources(argv: Sequence[str] = (), env: Mapping[str, str] | None = None) -> Config:
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
        return Config(**values)
    except ConfigError as error:  # each value passed parse(); this is a combination (the work cap)
        raise ConfigError(OPTION_BY_NAME[error.option].flag, error.problem) from None


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
