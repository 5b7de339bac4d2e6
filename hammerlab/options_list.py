"""`hammerlab options`: every client option with its range and default, grouped by mitigation.

`locust --help` cannot show them: Locust prints its help before it imports any locustfile, and the
options are registered when a locustfile imports the plugin. This list asks Locust's own parser, with
the plugin loaded, for every flag that is not Locust's, so it shows exactly what Locust accepts. The
ranges and defaults of the mitigation knobs come from their table (`locust_plugin.options.OPTIONS`).
Groups follow that table's order: each group starts at its first flag, so an option added under a
group's comment in options.py lands in that group here without an edit.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass

from locust_plugin.options import OPTIONS, Option

GROUP_STARTS: dict[str, str] = {
    "--launch-rate": "the launcher and the request (every client)",
    "--max-concurrent": "throttle, MAX_CONCURRENT (ThrottledClient, DeferredClient, CombinedClient)",
    "--breaker-mode": "circuit breaker (BreakerClient, CombinedClient)",
    "--max-sockets": "socket pool, maxSockets (PooledClient, CombinedClient)",
    "--connect-timeout-ms": "timeouts, REQUEST_TIMEOUT (TimeoutClient; the connect timeout: every client)",
    "--adaptive-algorithm": "adaptive concurrency limit (AdaptiveClient)",
    "--sre-k": "client-side adaptive throttling, SRE book (SreThrottleClient)",
    "--retry-attempts": "retries (RetryClient, CombinedClient)",
    "--hedge-delay-ms": "hedged requests (HedgedClient)",
    "--slo-ms": "accounting: what counts as good, and how a test ends (every client)",
    "--defer-dir": "defer, a throttle that drops nothing (DeferredClient)",
}
"""The first flag of each group, in OPTIONS order, and the group's title."""

REQUEST_FLAGS = ("--header",)
"""Flags outside the OPTIONS table that belong with the request (listed in the first group)."""

RUN_GROUP = "running a test: guard rails, server monitoring, mixes (every client)"
"""Every other flag the plugin registers (guard.py, monitoring.py, mix.py)."""


@dataclass(frozen=True)
class Listed:
    """One flag as `hammerlab options` shows it."""

    flag: str
    help: str
    allowed: str
    default: str


def plugin_actions() -> list[argparse.Action]:
    """Every flag the plugin adds to Locust's parser, in registration order (imports Locust)."""
    from locust.argument_parser import get_empty_argument_parser, get_parser, setup_parser_arguments

    import locust_plugin  # noqa: F401  (its listeners register the options on Locust's parser)

    locusts_own = get_empty_argument_parser()
    setup_parser_arguments(locusts_own)
    own = {flag for action in locusts_own._actions for flag in action.option_strings}
    return [a for a in get_parser()._actions if a.option_strings and not own & set(a.option_strings)]


def _allowed(option: Option) -> str:
    choices = getattr(option.parse, "choices", None)
    if choices:
        return " or ".join(choices) if len(choices) == 2 else "one of " + ", ".join(choices)
    return option.allowed or "text"


def _from_action(action: argparse.Action) -> Listed:
    flag = max(action.option_strings, key=len)
    if action.nargs == 0:
        allowed, default = "a switch, no value", "off"
    else:
        shape = str(action.metavar or "text")
        allowed = f"repeatable, {shape}" if isinstance(action, argparse._AppendAction) else shape
        default = str(action.default) if action.default not in (None, "", []) else "none"
    return Listed(flag, (action.help or "").replace("%%", "%"), allowed, default)


def groups() -> Iterator[tuple[str, list[Listed]]]:
    """(title, options) for every group: the OPTIONS table's groups in its order, then RUN_GROUP."""
    by_flag = {option.flag: option for option in OPTIONS}
    titled: dict[str, list[Listed]] = {title: [] for title in GROUP_STARTS.values()}
    title = GROUP_STARTS[OPTIONS[0].flag]
    others: list[Listed] = []
    for action in plugin_actions():
        listed = _from_action(action)
        option = by_flag.get(listed.flag)
        if option is not None:
            title = GROUP_STARTS.get(option.flag, title)
            listed = Listed(option.flag, option.help, _allowed(option), option.default or "empty")
            titled[title].append(listed)
        elif listed.flag in REQUEST_FLAGS:
            titled[GROUP_STARTS[OPTIONS[0].flag]].append(listed)
        else:
            others.append(listed)
    titled[RUN_GROUP] = others
    yield from ((title, listed) for title, listed in titled.items() if listed)


def render() -> str:
    """The text `hammerlab options` prints."""
    listing = list(groups())
    width = max(len(item.flag) for _, listed in listing for item in listed) + 2
    count = sum(len(listed) for _, listed in listing)
    lines = [
        f"Hammerlab client options ({count}). Give them to locust (`locust -f your_file.py "
        "--max-concurrent 8`), put them in locust.conf, edit them in the web UI, or pass them to "
        "`hammerlab compare` after `--`.",
    ]
    for title, listed in listing:
        lines += ["", f"{title}:"]
        for item in listed:
            lines.append(f"  {item.flag:<{width}}{item.help}")
            lines.append(f"  {'':<{width}}range: {item.allowed}; default: {item.default}")
    return "\n".join(lines)
