"""Which server the run is aimed at, and whether it is on this machine (the fault controls need that)."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

LOOPBACK_NAMES = ("localhost",)


def target_host(environment: Any) -> str:
    """The run's host: `--host` (or the web UI's host field), else the one host all user classes share."""
    if environment.host:
        return str(environment.host).rstrip("/")
    hosts = {getattr(cls, "host", None) for cls in environment.user_classes or ()}
    hosts.discard(None)
    hosts.discard("")
    return str(hosts.pop()).rstrip("/") if len(hosts) == 1 else ""


def loopback_problem(url: str) -> str | None:
    """None when `url` names this machine (every address it resolves to is loopback), else why not."""
    if not url:
        return "there is no host: start the target locally and set the host (e.g. http://127.0.0.1:3000)"
    hostname = urlsplit(url).hostname or ""
    refusal = (
        f"fault controls work only when the target is on loopback (127.0.0.1, ::1, localhost), "
        f"not {hostname or url!r}"
    )
    try:
        return None if ipaddress.ip_address(hostname).is_loopback else refusal
    except ValueError:
        pass
    if hostname.lower() not in LOOPBACK_NAMES:
        return refusal
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(hostname, None)}
    except OSError:
        return f"cannot resolve {hostname!r}"
    if addresses and all(ipaddress.ip_address(a.split("%", 1)[0]).is_loopback for a in addresses):
        return None
    return refusal
