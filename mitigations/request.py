"""The request a client sends to its upstream: method, path, headers and body, checked once.

Hammerlab's own target answers `GET /doWork`; any other HTTP/1.1 service wants its own request. One
`RequestSpec` is what the Locust clients (`--method`, `--path`, `--header`, `--body`, `--body-file`)
and the comparison's probe send, so the capacity measured is the capacity of the request under test.

The rules refuse what would send the request somewhere else or break the framing the transport owns:
a header named Host, Content-Length, Transfer-Encoding or Connection, a name that is not an HTTP token
(RFC 9110 §5.1), a value with a control character (CR/LF would split the request). Every refusal is
a `ValueError` with one line. Plain Python: the comparison runner uses it without importing Locust.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from mitigations.core import Call

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
MAX_BODY_BYTES = 1024 * 1024
MAX_HEADERS = 50
MAX_HEADER_NAME = 100
MAX_HEADER_VALUE = 4000
MAX_PATH = 2000
# The transport frames every request itself: these would contradict it or name another host.
RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _shown(text: str, limit: int = 40) -> str:
    shown = repr(text)
    return shown if len(shown) <= limit + 2 else shown[: limit - 1] + "…'"


def path_problem(text: str) -> str | None:
    """Why `text` is not a request path on the target, or None. `/` first, then printable ASCII; never
    a scheme, an authority (`//host`), user info (`@host`) or a backslash, which would send the request
    somewhere else."""
    if not text.startswith("/"):
        return "must start with /"
    if text.startswith("//"):
        return "must not start with // (that names another host)"
    if len(text) > MAX_PATH:
        return f"is longer than {MAX_PATH} characters"
    if any(not (" " < c < "\x7f") for c in text):
        return "must be printable ASCII without spaces (percent-encode the rest)"
    if "@" in text or "\\" in text:
        return "must not contain @ or \\ (they can name another host)"
    if "#" in text:
        return "must not contain # (a fragment is never sent)"
    parts = urlsplit("http://127.0.0.1" + text)
    if parts.netloc != "127.0.0.1" or parts.path != text.split("?", 1)[0]:
        return "must be a path, not a URL"
    return None


def parse_method(raw: object) -> str:
    text = str(raw).strip()
    if text not in METHODS:
        raise ValueError(f"{_shown(text)} is not one of {', '.join(METHODS)}")
    return text


def parse_header(raw: object) -> tuple[str, str]:
    """`'Name: value'` -> (name, value)."""
    text = str(raw)
    name, colon, value = text.partition(":")
    name, value = name.strip(), value.strip(" \t")
    if not colon or not name:
        raise ValueError(f"{_shown(text)} is not a header: write it as 'Name: value'")
    if len(name) > MAX_HEADER_NAME or not _TOKEN.fullmatch(name):
        raise ValueError(f"{_shown(name)} is not a header name (letters, digits and !#$%&'*+-.^_`|~)")
    if name.lower() in RESERVED_HEADERS:
        raise ValueError(f"{name} is set by the client itself; it cannot be given")
    if len(value) > MAX_HEADER_VALUE:
        raise ValueError(f"the value of {name} is longer than {MAX_HEADER_VALUE} characters")
    if any(not (" " <= c < "\x7f" or c == "\t") for c in value):
        raise ValueError(f"the value of {name} must be printable ASCII (no CR, LF or other control)")
    return name, value


def parse_headers(raws: list[str] | tuple[str, ...] | None) -> tuple[tuple[str, str], ...]:
    headers = tuple(parse_header(raw) for raw in raws or ())
    if len(headers) > MAX_HEADERS:
        raise ValueError(f"{len(headers)} headers given; at most {MAX_HEADERS}")
    return headers


def parse_body(raw: object) -> str:
    text = str(raw)
    if len(text.encode("utf-8", "surrogateescape")) > MAX_BODY_BYTES:
        raise ValueError(f"is longer than {MAX_BODY_BYTES:,} bytes (use --body-file for a file)")
    return text


def read_body_file(path: str) -> bytes:
    """The bytes of a regular file of at most MAX_BODY_BYTES, read now. A size from stat() is not
    enough: /proc/self/mem and /proc/kallsyms say 0 and then fail or run long when read, and a FIFO
    would block; so the file is opened without blocking, checked to be regular, and read (bounded).
    Raises ValueError with the reason (no path: the caller names it)."""
    if "\x00" in path:
        raise ValueError("is not a file path (it contains a NUL)")
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ValueError("is not a file (it does not exist)") from None
    except OSError as error:
        raise ValueError(f"cannot be read ({error.strerror or type(error).__name__})") from None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise ValueError("is not a file")
    with os.fdopen(descriptor, "rb") as handle:
        try:
            data = handle.read(MAX_BODY_BYTES + 1)
        except OSError as error:
            raise ValueError(f"cannot be read ({error.strerror or type(error).__name__})") from None
    if len(data) > MAX_BODY_BYTES:
        raise ValueError(f"is larger than {MAX_BODY_BYTES:,} bytes")
    return data


def body_file_problem(path: str) -> str | None:
    """None when `path` is a readable file of at most MAX_BODY_BYTES (read to the end now), else why not."""
    try:
        read_body_file(path)
    except ValueError as problem:
        return str(problem)
    return None


def parse_body_file(raw: object) -> str:
    """A path to a body file ('' for none); the file must exist and be small enough."""
    text = str(raw).strip()
    if text and (problem := body_file_problem(text)):
        raise ValueError(f"{_shown(text)} {problem}")
    return text


@dataclass(frozen=True)
class RequestSpec:
    """One request, checked at construction. `body` is the bytes sent (None: no body)."""

    method: str = "GET"
    path: str = "/doWork"
    headers: tuple[tuple[str, str], ...] = field(default=())
    body: bytes | None = None

    def __post_init__(self) -> None:
        parse_method(self.method)
        if problem := path_problem(self.path):
            raise ValueError(f"path {_shown(self.path)} {problem}")
        for name, value in self.headers:
            parse_header(f"{name}: {value}")
        if self.body is not None and len(self.body) > MAX_BODY_BYTES:
            raise ValueError(f"the body is larger than {MAX_BODY_BYTES:,} bytes")

    @classmethod
    def build(
        cls, method: str, path: str, headers: tuple[tuple[str, str], ...], body: str = "", body_file: str = ""
    ) -> RequestSpec:
        """From option values: `body` text or the bytes of `body_file` (not both)."""
        if body and body_file:
            raise ValueError("give --body or --body-file, not both")
        data: bytes | None = None
        if body_file:
            try:
                data = read_body_file(body_file)
            except ValueError as problem:
                raise ValueError(f"--body-file: {_shown(body_file)} {problem}") from None
        elif body:
            data = body.encode("utf-8")
        return cls(method, path, headers, data)

    @property
    def line(self) -> str:
        """`GET /doWork`, as the stats rows and messages name it."""
        return f"{self.method} {self.path}"

    def call(self, launched_at: float, deadline: float | None = None) -> Call:
        return Call(
            method=self.method,
            path=self.path,
            launched_at=launched_at,
            deadline=deadline,
            headers=dict(self.headers),
            body=self.body,
        )
