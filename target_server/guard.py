"""Who may reach /admin, and strict reading of what a request carries (query string, JSON body).

/admin changes what the server does (faults, the work model), so it answers only a client that is on this
machine *and* is not a web page acting through the user's browser:

- the peer address is loopback (127.0.0.0/8, ::1, or ::ffff:127.x.x.x when listening on `::`);
- the Host header, when present, names a loopback host (DNS rebinding sends the attacker's name);
- an Origin header, when present, is a loopback origin (a cross-site page's request carries its own);
- a POST says `Content-Type: application/json`, which a browser cannot send cross-site without a CORS
  preflight that this server never grants (the OWASP CSRF cheat sheet's "custom request header" rule).

Bodies and queries are parsed strictly: repeated keys, NaN, undecodable bytes and absurd nesting are a 400
with one line, never a 500.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from target_server.numbers import JSONProblem, strict_json

MAX_BODY_BYTES = 64 * 1024  # the largest admin body is a few hundred bytes
MAX_QUERY_FIELDS = 20
JSON_TYPE = "application/json"
PORT = re.compile(r"[0-9]{1,5}", re.ASCII)
PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]*", re.ASCII)


class InputError(ValueError):
    """A request input that cannot be used; the message is the whole one-line answer."""


# -- who is asking --------------------------------------------------------------------------------------


def is_loopback(address: str | None) -> bool:
    """127.0.0.0/8, ::1 and IPv4-mapped loopback (::ffff:127.0.0.1, what a `::` listener reports)."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def is_loopback_host(host: str) -> bool:
    """A Host or Origin host part (`name`, `name:port`, `[v6]:port`) that names this machine."""
    host = host.strip().lower()
    if host.startswith("["):
        literal, bracket, rest = host[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and PORT.fullmatch(rest[1:]))):
            return False
        return is_loopback(literal)
    name, colon, port = host.partition(":")
    if colon and not PORT.fullmatch(port):
        return False
    name = name.rstrip(".")
    return name == "localhost" or name.endswith(".localhost") or is_loopback(name)


def is_loopback_origin(origin: str) -> bool:
    """`http://127.0.0.1:8089` yes; `http://evil.example`, `null` (sandboxed frames, file://) no."""
    scheme, sep, rest = origin.strip().partition("://")
    if not sep or scheme.lower() not in ("http", "https") or "/" in rest or "@" in rest:
        return False
    return is_loopback_host(rest)


def admin_problem(environ: Mapping[str, Any]) -> tuple[int, str] | None:
    """Why this request may not use /admin, as (status, one line), or None when it may."""
    remote = environ.get("REMOTE_ADDR")
    if not is_loopback(remote):
        return 403, f"/admin answers loopback clients only, not {remote}"
    host = environ.get("HTTP_HOST")
    if host is not None and not is_loopback_host(host):
        return 403, f"/admin answers only requests for a loopback host (Host {host!r} is not one)"
    origin = environ.get("HTTP_ORIGIN")
    if origin is not None and not is_loopback_origin(origin):
        return 403, f"/admin refuses cross-site requests (Origin {origin!r} is not a loopback origin)"
    if environ.get("REQUEST_METHOD") == "POST":
        content_type = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
        if content_type != JSON_TYPE:
            return 415, f"/admin POST needs Content-Type: {JSON_TYPE}, got {content_type or 'none'!r}"
    return None


# -- what it carries ---------------------------------------------------------------------------------------


def query_values(query: str) -> dict[str, str]:
    """The query string as {key: value}: printable ASCII, valid UTF-8 escapes, each key at most once."""
    if not PRINTABLE_ASCII.fullmatch(query):
        raise InputError("query: the query string must be printable ASCII; percent-encode anything else")
    try:
        pairs = parse_qsl(
            query, keep_blank_values=True, encoding="utf-8", errors="strict", max_num_fields=MAX_QUERY_FIELDS
        )
    except ValueError as error:  # UnicodeDecodeError for %FF; too many fields
        reason = "an escape is not UTF-8" if isinstance(error, UnicodeDecodeError) else str(error)
        raise InputError(f"query: cannot read the query string ({reason})") from None
    values: dict[str, str] = {}
    for key, value in pairs:
        if key in values:
            raise InputError(f"{key}: given twice in the query string; give each parameter once")
        values[key] = value
    return values


def parse_json(data: bytes) -> Any:
    """Strict JSON (numbers.strict_json: no repeated keys, no NaN/Infinity, bounded nesting), else a 400."""
    if not data.strip():
        raise InputError("body: empty; send a JSON object")
    try:
        return strict_json(data)
    except JSONProblem as problem:
        raise InputError(f"body: {problem}") from None
