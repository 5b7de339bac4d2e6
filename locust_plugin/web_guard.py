"""Who may use the Hammerlab routes of Locust's web UI: this machine, from a page of the UI itself.

`/hammerlab/*` injects faults into the target and hands out its numbers, so it follows the target's
loopback-only `/admin` (issue 10, finding 2), and a browser must not be usable against it (finding 3):

  - the peer is a loopback address (127.0.0.0/8, ::1, or ::ffff:127.x as a dual-stack socket sees
    an IPv4 client); proxy headers such as X-Forwarded-For are never believed;
  - the Host header is a loopback name or address (`localhost`, `127.x.x.x`, `[::1]`), which stops DNS
    rebinding: a page at evil.example that resolves to 127.0.0.1 still sends `Host: evil.example`;
  - an Origin, when a browser sends one, is the UI's own (same host and port as Host), and a
    `Sec-Fetch-Site: cross-site` request is refused;
  - a POST carries `Content-Type: application/json`, which a cross-site HTML form cannot send.

Locust's own routes (`/swarm`, `/stop`, ...) keep Locust's rules (`--web-host`, `--web-login`); the one
thing added for them is the Origin rule on requests that change state (`csrf_problem`), and, while the UI
listens on loopback only, the loopback Host rule on every route (`host_problem`, against DNS rebinding).

What counts as loopback is `mitigations.checked_url`'s one predicate.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from mitigations.checked_url import is_loopback as is_loopback_address
from mitigations.checked_url import is_loopback_host

__all__ = ["csrf_problem", "is_loopback_address", "is_loopback_host", "refusal"]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_problem(method: str, headers: Mapping[str, str]) -> str | None:
    """A browser request from another site that would change state: a foreign Origin, or
    Sec-Fetch-Site: cross-site. Requests without those headers (curl, scripts) are not browsers'."""
    if method.upper() in SAFE_METHODS:
        return None
    if (headers.get("Sec-Fetch-Site") or "").lower() == "cross-site":
        return "cross-site requests are refused"
    origin = headers.get("Origin")
    if origin is None:
        return None
    host = (headers.get("Host") or "").lower()
    parts = urlsplit(origin.lower())
    if parts.scheme not in ("http", "https") or not host or parts.netloc != host:
        return f"requests from another origin ({origin[:80]!r}) are refused"
    return None


def refusal(method: str, remote_addr: str | None, headers: Mapping[str, str]) -> tuple[int, str] | None:
    """(status, one line) when a request to /hammerlab/* must be refused, else None."""
    if not is_loopback_address(remote_addr):
        return 403, f"the Hammerlab routes answer loopback clients only, not {remote_addr!r}"
    host = headers.get("Host")
    if not is_loopback_host(host):
        return 403, f"the Host header must name this machine (localhost, 127.0.0.1, [::1]), not {host!r}"
    if (headers.get("Sec-Fetch-Site") or "").lower() == "cross-site":
        return 403, "cross-site requests are refused"
    origin = headers.get("Origin")
    if origin is not None:
        parts = urlsplit(origin.lower())
        if parts.scheme not in ("http", "https") or parts.netloc != (host or "").lower():
            return 403, f"requests from another origin ({origin[:80]!r}) are refused"
    if method.upper() == "POST":
        mimetype = (headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if mimetype != "application/json":
            return 415, "a POST must have Content-Type: application/json"
    return None
