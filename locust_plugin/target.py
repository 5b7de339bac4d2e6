"""Which server the run is aimed at, and whether it is on this machine (the fault controls need that)."""

from __future__ import annotations

from typing import Any

from mitigations.checked_url import LOOPBACK_NAMES, CheckedURL, URLRefused, checked_url, is_loopback, parse


def target_host(environment: Any) -> str:
    """The run's host: `--host` (or the web UI's host field), else the one host all user classes share."""
    if environment.host:
        return str(environment.host).rstrip("/")
    hosts = {getattr(cls, "host", None) for cls in environment.user_classes or ()}
    hosts.discard(None)
    hosts.discard("")
    return str(hosts.pop()).rstrip("/") if len(hosts) == 1 else ""


def fault_target(url: str) -> CheckedURL:
    """`url` checked for the fault controls, which are loopback-only whatever the opt-in: a loopback
    address, or localhost resolving to loopback only. Raises URLRefused with the one line why not."""
    if not url:
        raise URLRefused(
            "there is no host: start the target locally and set the host (e.g. http://127.0.0.1:3000)"
        )
    refusal = URLRefused(
        f"fault controls work only when the target is on loopback (127.0.0.1, ::1, localhost), not {url!r}"
    )
    try:
        host = parse(url)[1]
    except URLRefused:
        raise refusal from None
    if host not in LOOPBACK_NAMES and not is_loopback(host):
        raise refusal  # never resolved: a name other than localhost is not this machine's to fault
    try:
        target = checked_url(url, allow_remote=False)
    except URLRefused:
        raise refusal from None
    if not target.loopback:
        raise refusal
    return target


def loopback_problem(url: str) -> str | None:
    """None when `url` names this machine (every address it resolves to is loopback), else why not."""
    try:
        fault_target(url)
    except URLRefused as refused:
        return str(refused)
    return None
