"""External workers (`--external-workers N`): the comparison starts only the Locust master of each class;
the N workers run on other hosts, started by the user (docs/distributed.md).

Each class is still one `locust --headless` run, as with `--workers`, now as `--master --expect-workers N
--expect-workers-max-wait S` bound to `--master-bind-host`:`--master-bind-port`. Locust sends its workers
the host and every Hammerlab option with each spawn, so a worker's own command line carries only what is
its own: the locustfiles, where its master is, and its own `--allow-remote` (locust_plugin/own_opt_in.py).

Reusing workers across classes. A Locust worker exits when its master quits (runners.py, "quit"), and
the comparison runs one master per class, so no worker outlives its class. Rather than keep one master
for every class (which would merge the classes' stats and ledgers in one run), the user runs each worker
in a restart loop (`while :; do locust ... --worker ...; sleep 1; done`, a systemd `Restart=always`, or
a container whose command is that loop). A restarted worker cannot reach the master that is quitting: by
the time it has started, that master has stopped reading messages (it waits 0.5 s after sending `quit`,
then stops its listener), so its `client_ready` waits unanswered and the worker sends it again every
5 s for up to 5 minutes (CONNECT_TIMEOUT x CONNECT_RETRY_COUNT) until the next class's master binds the
same port and answers. So a class after the first starts within a few seconds of its master.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import re
import shlex
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from comparison.errors import ConfigError, check_range, shown

DEFAULT_BIND_HOST = "*"  # Locust's own default: every interface of this machine
DEFAULT_BIND_PORT = 5557  # Locust's own default
DEFAULT_WAIT_S = 60
MAX_WAIT_S = 600
MAX_EXTERNAL_WORKERS = 128
GAVE_UP = "Gave up waiting for workers to connect"  # Locust's own line (locust/main.py)
_CONNECTED = re.compile(r"Waiting for workers to be ready, (\d+) of (\d+) connected")


def bind_address(text: str) -> str | None:
    """`text` as Locust's ZeroMQ binds and connects to it (`tcp://HOST:PORT`): `*`, a dotted-quad IPv4
    address, or an IPv6 address in brackets, which ZeroMQ needs (`tcp://::1:5557` does not bind). None
    for anything else: a name, brackets that do not pair, a zone, spaces."""
    if text == "*":
        return text
    with contextlib.suppress(ValueError):
        return str(ipaddress.IPv4Address(text))
    inner = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return f"[{ipaddress.IPv6Address(inner)}]" if "%" not in inner else None
    except ValueError:
        return None


def bind_host_problem(text: str) -> str | None:
    """None for what `bind_address` takes, else what is wrong."""
    if bind_address(text) is None:
        return "is not an IP address of this machine (e.g. 10.0.0.6 or [::1], no zone) or * (every interface)"
    return None


@dataclass(frozen=True)
class ExternalWorkers:
    """How the master of every class waits for its workers. Invalid values raise ConfigError."""

    count: int
    bind_host: str = DEFAULT_BIND_HOST
    bind_port: int = DEFAULT_BIND_PORT
    wait_s: int = DEFAULT_WAIT_S

    def __post_init__(self) -> None:
        if type(self.count) is not int or not 1 <= self.count <= MAX_EXTERNAL_WORKERS:
            raise ConfigError(
                "--external-workers",
                f"must be a whole number from 1 to {MAX_EXTERNAL_WORKERS}, got {self.count!r}",
            )
        if problem := bind_host_problem(self.bind_host):
            raise ConfigError("--master-bind-host", f"{shown(self.bind_host)} {problem}")
        object.__setattr__(self, "bind_host", bind_address(self.bind_host))  # the form ZeroMQ binds
        if type(self.bind_port) is not int or not 1 <= self.bind_port <= 65535:
            raise ConfigError("--master-bind-port", f"must be a port from 1 to 65535, got {self.bind_port!r}")
        if type(self.wait_s) is not int:
            raise ConfigError(
                "--external-workers-wait", f"must be a whole number of seconds, got {self.wait_s!r}"
            )
        check_range("--external-workers-wait", self.wait_s, 1, MAX_WAIT_S, "seconds")

    def master_args(self) -> list[str]:
        """The master's part of each class's Locust command."""
        return [
            "--master",
            "--expect-workers", str(self.count),
            "--expect-workers-max-wait", str(self.wait_s),
            "--master-bind-host", self.bind_host,
            "--master-bind-port", str(self.bind_port),
        ]  # fmt: skip

    def address(self) -> str:
        return f"{self.bind_host}:{self.bind_port}"

    def worker_command(self, locustfiles: str, allow_remote: bool) -> str:
        """The loop a user types on each worker host (MASTER stands for this machine's address)."""
        master = "MASTER" if self.bind_host == "*" else self.bind_host
        locust = ["locust", "-f", locustfiles, "--worker", "--master-host", master, "--master-port",
                  str(self.bind_port), *(["--allow-remote"] if allow_remote else [])]  # fmt: skip
        return f"while :; do {shlex.join(locust)}; sleep 1; done"

    def bind_problem(self) -> str | None:
        """Why the master could not listen where it was told (address not on this machine, port taken),
        as one line, else None. Binds for an instant and lets go, before any class starts."""
        host = "" if self.bind_host == "*" else self.bind_host.strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, self.bind_port))
            except OSError as error:
                return (
                    f"--master-bind-host/--master-bind-port: cannot listen on {self.address()} "
                    f"({error.strerror or error})"
                )
        return None

    def did_not_come(self, client: str, log: Path) -> str | None:
        """The one line for a master that gave up waiting for its workers, from its log; else None."""
        try:
            text = log.read_text(errors="replace")
        except OSError:
            return None
        if GAVE_UP not in text:
            return None
        counts = _CONNECTED.findall(text)
        came = f" (only {counts[-1][0]} did)" if counts else ""
        return (
            f"{client}: the {self.count} external workers did not all connect to {self.address()} within "
            f"{self.wait_s} s{came}; start them on their hosts (docs/distributed.md), or raise "
            "--external-workers-wait"
        )


def add_arguments(parser: argparse.ArgumentParser, count: Callable[[str], int]) -> None:
    """The runner's options for workers on other hosts; `count` parses a whole number."""
    parser.add_argument(
        "--external-workers",
        type=count,
        help=f"run each class as a Locust master only, waiting for this many workers started on other "
        f"hosts (1 to {MAX_EXTERNAL_WORKERS}; needs --host; docs/distributed.md gives the worker command)",
    )
    parser.add_argument(
        "--master-bind-host",
        help=f"with --external-workers: the address the master listens on for its workers, an IP address "
        f"of this machine or * for every interface (default {DEFAULT_BIND_HOST})",
    )
    parser.add_argument(
        "--master-bind-port",
        type=count,
        help=f"with --external-workers: the TCP port the master listens on (default {DEFAULT_BIND_PORT})",
    )
    parser.add_argument(
        "--external-workers-wait",
        type=count,
        help=f"with --external-workers: seconds each class's master waits for all its workers before the "
        f"run stops with one line (1 to {MAX_WAIT_S}; default {DEFAULT_WAIT_S})",
    )


def from_args(args: argparse.Namespace) -> ExternalWorkers | None:
    """--external-workers and its options; the bind options alone are refused."""
    if args.external_workers is None:
        for dest in ("master_bind_host", "master_bind_port", "external_workers_wait"):
            if getattr(args, dest) is not None:
                raise ConfigError(
                    "--" + dest.replace("_", "-"),
                    "only with --external-workers (with --workers the master talks to its own processes "
                    "over a free loopback port)",
                )
        return None
    given = {
        name: value
        for name, value in (
            ("bind_host", args.master_bind_host),
            ("bind_port", args.master_bind_port),
            ("wait_s", args.external_workers_wait),
        )
        if value is not None
    }
    return ExternalWorkers(args.external_workers, **given)


def instances(args: argparse.Namespace, external: ExternalWorkers | None, default: int) -> int:
    """Client instances: --workers, else as many as --external-workers, else the scenario's default."""
    if external is not None and args.workers is not None:
        raise ConfigError(
            "--external-workers",
            "give either --workers (processes on this machine) or --external-workers (workers on other "
            "hosts), not both",
        )
    if args.workers is not None:
        return int(args.workers)
    return args.external_workers if external is not None else default
