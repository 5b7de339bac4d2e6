"""Where load may go: one loopback predicate and one checked-URL value, for every outbound request.

Hammerlab's clients exist to overload servers, so they load only this machine unless the sending
process was told otherwise on its own command line (`--allow-remote`) or in its own environment
(`HAMMERLAB_ALLOW_REMOTE=1`). Every layer (the transports, the /stats sampler, the metrics scraper, the
probes, the comparison's target helpers, the web UI's fault forwarding) asks this module and no other.

Two parsers that disagree are how a guard is bypassed: `urlsplit` reads `http://10.200.0.1\\@127.0.0.1`
as host 127.0.0.1, urllib3 as 10.200.0.1. So a URL is read by one strict grammar that every parser
agrees on (no user info, backslash, percent sign, space, control or non-ASCII character in it; a host
that is a name, a dotted-quad IPv4 address or a bracketed IPv6 address without a zone; a port from 1 to
65535), its host is resolved once, here, and the transports connect to the addresses resolved here
(`mitigations.outbound`), never resolving again. Anything else is refused with one line.

The target server keeps its own copy of the peer predicate (target_server/guard.py): it is a separate
program that must not import the client library; tests/test_checked_url.py pins the two together.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from dataclasses import dataclass, replace

ALLOW_REMOTE_ENV = "HAMMERLAB_ALLOW_REMOTE"
LOOPBACK_NAMES = frozenset({"localhost"})
DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_URL = re.compile(
    rf"(?P<scheme>https?)://(?P<host>\[[0-9a-f:.]+\]|{_LABEL}(?:\.{_LABEL})*)(?::(?P<port>[0-9]{{1,5}}))?"
    r"(?P<target>[/?][!-~]*)?",
    re.ASCII | re.IGNORECASE,
)
_HOST_HEADER = re.compile(
    r"(?P<name>\[[0-9a-f:.]+\]|[a-z0-9.-]+?)\.?(?::(?P<port>[0-9]{1,5}))?", re.ASCII | re.I
)
_NUMERIC_LABEL = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)", re.ASCII)
FORBIDDEN = "\\#"  # a backslash is a slash to some parsers; a fragment is never sent
ALLOWED = (
    "http:// or https://, a host name, dotted-quad IPv4 or [IPv6] address, an optional port 1-65535 and a "
    "path; no user info, backslash, percent sign, space or non-ASCII character in the host part"
)


class URLRefused(ValueError):
    """A URL that may not be loaded; the message is the whole one-line answer."""


def allow_remote_from_env(environ: dict[str, str] | None = None) -> bool:
    value = (os.environ if environ is None else environ).get(ALLOW_REMOTE_ENV, "")
    return value.strip().lower() in ("1", "true", "yes", "on")


def is_loopback(address: str | None) -> bool:
    """127.0.0.0/8, ::1 and IPv4-mapped loopback (::ffff:127.0.0.1); an address, never a name."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0].strip("[]"))
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def is_loopback_host(authority: str | None) -> bool:
    """A Host header (`name[:port]`, `[v6][:port]`) naming this machine: localhost or a loopback address."""
    found = _HOST_HEADER.fullmatch((authority or "").strip())
    if not found or (found["port"] is not None and not 1 <= int(found["port"]) <= 65535):
        return False
    name = found["name"].lower()
    return name in LOOPBACK_NAMES or is_loopback(name)


@dataclass(frozen=True)
class CheckedURL:
    """A URL that passed the guard: its parts, and the addresses its host resolved to when it was checked.
    Send only through `mitigations.outbound`, which connects to `addresses` and nowhere else."""

    scheme: str
    host: str  # a name or an IP literal, lower case, IPv6 without brackets
    port: int
    target: str  # the path and query, "" for none
    addresses: tuple[str, ...]
    allow_remote: bool = False

    @property
    def authority(self) -> str:
        """What the Host header says: `host[:port]`, the port left out when it is the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if DEFAULT_PORTS[self.scheme] == self.port else f"{host}:{self.port}"

    @property
    def text(self) -> str:
        return f"{self.scheme}://{self.authority}{self.target}"

    @property
    def path(self) -> str:
        """The request target on the wire: origin-form, `/` at least."""
        return self.target if self.target.startswith("/") else f"/{self.target}"

    @property
    def loopback(self) -> bool:
        return all(is_loopback(a) for a in self.addresses)

    def join(self, path: str) -> CheckedURL:
        """This URL with `path` (origin-form: `/...`) appended to its path, on the same addresses."""
        return replace(self, target=self.target.split("?", 1)[0].rstrip("/") + request_target(path))

    def with_port(self, port: int) -> CheckedURL:
        """The same host, resolved once already, on another port (the target's status port)."""
        if not 1 <= port <= 65535:
            raise URLRefused(f"port {port}: a port is 1 to 65535")
        return replace(self, port=port, target="")

    def __str__(self) -> str:
        return self.text


def request_target(path: str) -> str:
    """A path to send as is: `/` first, printable ASCII, no backslash or fragment. Raises URLRefused."""
    if not isinstance(path, str) or not path.startswith("/") or path.startswith("//"):
        raise URLRefused(f"path {str(path)[:80]!r}: a path starts with one / (e.g. /doWork)")
    if not re.fullmatch(r"[!-~]*", path, re.ASCII) or any(c in path for c in FORBIDDEN):
        raise URLRefused(
            f"path {path[:80]!r}: a path is printable ASCII without spaces, backslashes or '#'; "
            "percent-encode anything else"
        )
    return path


def parse(text: str, option: str = "--host") -> tuple[str, str, int, str]:
    """(scheme, host, port, target) by the one grammar. Raises URLRefused naming the value."""
    shown = repr(text[:120]) if isinstance(text, str) else repr(text)
    found = _URL.fullmatch(text) if isinstance(text, str) else None
    if found is None or any(c in (found["target"] or "") for c in FORBIDDEN):
        raise URLRefused(f"{option} {shown} is not a URL Hammerlab sends to: write {ALLOWED}")
    if (found["target"] or "").startswith("//"):  # a protocol-relative target: a host to some parsers
        raise URLRefused(f"{option} {shown}: its path starts with //; start it with one / (e.g. /api)")
    scheme, host, port_text = found["scheme"].lower(), found["host"].lower(), found["port"]
    if host.startswith("["):
        try:
            host = str(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            raise URLRefused(f"{option} {shown}: {host} is not an IPv6 address") from None
    elif _NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]):
        try:  # 2130706433, 0177.0.0.1 and 0x7f.1 mean 127.0.0.1 to some parsers and names to others
            canonical = str(ipaddress.IPv4Address(host))
        except ValueError:
            canonical = ""
        if canonical != host:
            raise URLRefused(f"{option} {shown}: write an IPv4 address as four decimal numbers (127.0.0.1)")
    port = int(port_text) if port_text else DEFAULT_PORTS[scheme]
    if not 1 <= port <= 65535:
        raise URLRefused(f"{option} {shown}: the port must be 1 to 65535")
    return scheme, host, port, found["target"] or ""


def resolve(host: str, port: int = 80) -> tuple[str, ...]:
    """Every address `host` resolves to, in the resolver's order (an IP literal is itself). Raises OSError."""
    try:
        return (str(ipaddress.ip_address(host)),)
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return tuple(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))


def opt_in_line() -> str:
    return f"pass --allow-remote (or set {ALLOW_REMOTE_ENV}=1) to load it anyway"


def checked_url(text: str, allow_remote: bool = False, option: str = "--host") -> CheckedURL:
    """`text` parsed and resolved once. Without `allow_remote` (or the environment's opt-in), every
    address must be loopback. Raises URLRefused with one line naming the value and what is allowed."""
    scheme, host, port, target = parse(text, option)
    allow = bool(allow_remote) or allow_remote_from_env()
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError, ValueError):
        raise URLRefused(
            f"{option} {text}: cannot resolve {host!r}, so it cannot be checked to be loopback"
            + ("" if allow else f"; {opt_in_line()}")
        ) from None
    if not addresses:
        raise URLRefused(f"{option} {text}: {host!r} resolves to nothing")
    others = [a for a in addresses if not is_loopback(a)]
    if others and not allow:
        raise URLRefused(
            f"{option} {text} resolves to {', '.join(others[:3])}, not a loopback address; Hammerlab "
            "clients are built to overload servers, so they only load this machine unless you "
            + opt_in_line()
        )
    return CheckedURL(scheme, host, port, target, addresses, allow)


def remote_problem(url: str, allow_remote: bool = False, option: str = "--host") -> str | None:
    """None when `url` may be loaded (loopback, or opted in), else the one line that refuses it."""
    try:
        checked_url(url, allow_remote, option)
    except URLRefused as refused:
        return str(refused)
    return None


def is_local_url(url: str) -> bool:
    """True when `url` passes the grammar and every address its host resolves to is loopback."""
    try:
        return checked_url(url, allow_remote=True).loopback
    except URLRefused:
        return False
