"""The only ways Hammerlab sends a request: to the addresses a `CheckedURL` resolved, and nowhere else.

Each HTTP stack is given the checked addresses instead of a name to resolve, so what the guard checked
is what the socket connects to:

- `fetch`: one small request over `http.client` (the /stats sampler, the metrics scraper, the probes'
  and the comparison's target helpers, the web UI's fault forwarding). http.client follows no redirect
  and reads no proxy variable;
- `pinned_session`: a requests.Session (RequestsTransport) whose connection pools connect only to the
  checked addresses, that refuses a request for any other host or port, ignores HTTP(S)_PROXY
  (`trust_env = False`) and is used with `allow_redirects=False`;
- `PinnedConnectionPool`: geventhttpclient's pool (FastTransport) with the resolver replaced by the
  checked addresses; it never follows redirects and is given no proxy.
"""

from __future__ import annotations

import http.client
import socket
from dataclasses import dataclass
from typing import Any

import requests
import requests.adapters
import urllib3
from geventhttpclient.connectionpool import ConnectionPool
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from mitigations.checked_url import CheckedURL, URLRefused

MAX_ANSWER_BYTES = 8 * 1024 * 1024


def connect(target: CheckedURL, timeout: Any, options: Any = None, source: Any = None) -> socket.socket:
    """A TCP connection to the first of the checked addresses that accepts one, with no name lookup at
    all (the addresses are literals). `timeout` None waits forever; a non-number leaves the default.
    Raises OSError."""
    error: OSError | None = None
    for address in target.addresses:
        sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
        try:
            for option in options or ():
                sock.setsockopt(*option)
            if timeout is None or isinstance(timeout, int | float):
                sock.settimeout(timeout)
            if source:
                sock.bind(source)
            sock.connect((address, target.port))
            return sock
        except OSError as failed:
            sock.close()
            error = failed
    raise error or OSError(f"{target.host} has no address")


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def fetch(
    target: CheckedURL,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 3.0,
    limit: int = MAX_ANSWER_BYTES,
) -> Answer:
    """One request to `target` on a fresh connection, closed after the answer. No redirect is followed
    and no proxy is used. Raises OSError or http.client.HTTPException when no answer arrives."""
    connection_class = http.client.HTTPSConnection if target.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(target.host, target.port, timeout=timeout)
    connection._create_connection = lambda *_a, **_k: connect(target, timeout)  # type: ignore[attr-defined]
    try:
        connection.request(method, target.path, body=body, headers={"Connection": "close", **(headers or {})})
        response = connection.getresponse()
        data = response.read(limit)
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        connection.close()


# -- requests / urllib3 ---------------------------------------------------------------------------------


def _pinned_connection(base: type[HTTPConnection], target: CheckedURL) -> type[HTTPConnection]:
    class Pinned(base):  # type: ignore[valid-type,misc]
        def _new_conn(self) -> socket.socket:
            try:
                return connect(target, self.timeout, self.socket_options, self.source_address)
            except TimeoutError as error:
                raise urllib3.exceptions.ConnectTimeoutError(
                    self, f"connect to {target.host} timed out"
                ) from error
            except OSError as error:
                raise urllib3.exceptions.NewConnectionError(self, f"cannot connect: {error}") from error

    return Pinned


def _pinned_pool(
    base: type[HTTPConnectionPool], connection: type[HTTPConnection]
) -> type[HTTPConnectionPool]:
    return type(f"Pinned{base.__name__}", (base,), {"ConnectionCls": connection})


class PinnedAdapter(requests.adapters.HTTPAdapter):
    """An HTTPAdapter whose pools connect only to `target`'s checked addresses, for its host and port only."""

    def __init__(self, target: CheckedURL, **kwargs: Any) -> None:
        self.target = target
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _pinned_pool(HTTPConnectionPool, _pinned_connection(HTTPConnection, self.target)),
            "https": _pinned_pool(HTTPSConnectionPool, _pinned_connection(HTTPSConnection, self.target)),
        }

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        raise requests.exceptions.InvalidURL("Hammerlab sends through no proxy")

    def build_connection_pool_key_attributes(self, request: Any, verify: Any, cert: Any = None) -> Any:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        host = (host_params.get("host") or "").strip("[]").lower()
        port = host_params.get("port") or (443 if host_params.get("scheme") == "https" else 80)
        if (host_params.get("scheme"), host, port) != (
            self.target.scheme,
            self.target.host,
            self.target.port,
        ):
            raise requests.exceptions.InvalidURL(f"{request.url[:120]!r} is not {self.target.text}")
        return host_params, pool_kwargs


def pinned_session(target: CheckedURL, pool_size: int) -> requests.Session:
    """A session for `target` only: pinned pools, no proxies or .netrc from the environment, no retries.
    Callers pass `allow_redirects=False` on every request."""
    session = requests.Session()
    session.trust_env = False
    adapter = PinnedAdapter(
        target,
        pool_connections=1,
        pool_maxsize=pool_size,
        pool_block=False,
        max_retries=0,
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


# -- geventhttpclient -----------------------------------------------------------------------------------


class PinnedConnectionPool(ConnectionPool):
    """geventhttpclient's pool with its resolver replaced by the checked addresses."""

    def __init__(self, target: CheckedURL, **kwargs: Any) -> None:
        if target.scheme != "http":
            raise URLRefused(f"the fast backend speaks plain http only, got {target.text!r}")
        self.target = target
        super().__init__(target.host, target.port, target.host, target.port, **kwargs)

    def _resolve(self) -> list[Any]:
        infos = []
        for address in self.target.addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (
                (address, self.target.port, 0, 0)
                if family == socket.AF_INET6
                else (address, self.target.port)
            )
            infos.append((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
        return infos
