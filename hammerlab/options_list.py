"""`hammerlab options`: every client option with its range and default, grouped by mitigation.

`locust --help` cannot show them: Locust prints its help before it imports any locustfile, and the
options are registered when a locustfile imports the plugin. This list reads the same registration
(`locust_plugin.options.add_arguments`) through a recorder, so it shows exactly what Locust gets.
Groups follow the order of `OPTIONS`: each group starts at its first flag, and an option added under a
group's comment in options.py lands in that group here without an edit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from locust_plugin.options import OPTIONS, Option, add_arguments

GROUP_STARTS: dict[str, str] = {
    "--launch-rate": "the launcher and the request (every client)",
    "--max-concurrent": "throttle, MAX_CONCURRENT (ThrottledClient, DeferredClient, CombinedClient)",
    "--breaker-mode": "circuit breaker (BreakerClient, CombinedClient)",
    "--max-sockets": "socket pool, maxSockets (PooledClient, CombinedClient)",
    "--connect-timeout-ms": "timeouts, REQUEST_TIMEOUT (TimeoutClient; the connect timeout: every client)",
    "--adaptive-algorithm": "adaptive concurrency limit (AdaptiveClient)",
    "--sre-k": "client-side adaptive throttling, SRE book (SreThrottleClient)",
    "--retry-attempts": "retries (RetryClient, CombinedClient)",
    "--slo-ms": "accounting: what counts as good, and how a test ends (every client)",
    "--defer-dir": "defer, a throttle that drops nothing (DeferredClient)",
}
"""The first flag of each group, in OPTIONS order, and the group's title."""

EXTRA_GROUP = GROUP_STARTS["--launch-rate"]
"""Where flags registered outside the OPTIONS table (--header) are listed."""


@dataclass(frozen=True)
class Listed:
    """One flag as `hammerlab options` shows it."""

    flag: str
    help: str
    allowed: str
    default: str


class _Recorder:
    """Stands in for Locust's parser: keeps what `add_arguments` registers, in order."""

    def __init__(self) -> None:
        self.added: list[tuple[str, dict[str, Any]]] = []

    def add_argument(self, flag: str, **kwargs: Any) -> None:
        self.added.append((flag, kwargs))


def _allowed(option: Option) -> str:
    choices = getattr(option.parse, "choices", None)
    if choices:
        return " or ".join(choices) if len(choices) == 2 else "one of " + ", ".join(choices)
    return option.allowed or "text"


def registered() -> list[tuple[str, dict[str, Any]]]:
    """Every (flag, argparse keywords) the plugin registers with Locust, in order."""
    recorder = _Recorder()
    add_arguments(recorder)
    return recorder.added


def groups() -> Iterator[tuple[str, list[Listed]]]:
    """(title, options) for every group, in OPTIONS order; flags outside the table join EXTRA_GROUP."""
    by_flag = {option.flag: option for option in OPTIONS}
    titled: dict[str, list[Listed]] = {}
    title = EXTRA_GROUP
    extras: list[Listed] = []
    for flag, kwargs in registered():
        option = by_flag.get(flag)
        if option is None:
            help_text = str(kwargs.get("help", "")).replace("%%", "%")
            extras.append(Listed(flag, help_text, f"repeatable, {kwargs.get('metavar', 'VALUE')}", "none"))
            continue
        title = GROUP_STARTS.get(flag, title)
        listed = Listed(flag, option.help, _allowed(option), option.default or "empty")
        titled.setdefault(title, []).append(listed)
    titled.setdefault(EXTRA_GROUP, []).extend(extras)
    yield from titled.items()


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
