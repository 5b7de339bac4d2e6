"""Hosts made of network namespaces, for distributed tests (issue 23; FIELD-NOTES §6). Not a test module.

This machine stands in for several hosts with no traffic leaving it:

  - the *world* is a private network namespace the test starts (`run_in_world`, i.e. `unshare -n`); it
    is host A, where the target and the Locust master run, at `HOST_A` = 10.200.0.1 (on its `lo`);
  - `hosts("B", "C")` builds one more network namespace per name (with its own UTS namespace, so its
    host name is `host-b`, as Locust's worker ids show), each held by a `sleep` process, and joins it
    to A by a veth pair: A's end `hl-<name>` has 10.200.<i>.1/24, the host's end `eth0` has
    10.200.<i>.2/24 and a route to 10.200.0.1 through it. Hosts reach A, and one another only through
    A's routes (A does not forward: the workers talk to the master and the target, never to each other);
  - `Host.popen(argv)` runs a command in that host (`nsenter -n -u`, which execs the command: the returned
    process's pid is the program's own, so SIGKILL reaches it);
  - `Host.cut()` / `Host.restore()` bring A's end of its veth down and up: the host is cut off and
    comes back, its own addresses and route intact.

Every address is 10.200.x.y inside those namespaces; `hosts` refuses to run in the machine's own
network namespace. When the world ends (the script exits, the holders are killed), the namespaces and
their veths go with it.

    # the test (pytest side):
    if problem := veth_problem(): pytest.skip(problem)
    result = run_in_world([sys.executable, "tests/netns_something.py"], timeout=120)
    # the script (inside the world):
    with hosts("B", "C") as net:
        worker = net["B"].popen([sys.executable, "-m", "locust", "--worker", "--master-host", HOST_A, ...])
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HOST_A = "10.200.0.1"
WORLD = [
    "unshare",
    "-n",
    "sh",
    "-c",
    f'ip link set lo up && ip addr add {HOST_A}/32 dev lo && exec "$@"',
    "_",
]
HOLD_S = 900  # a holder outlives any test; it is killed when its `hosts` block ends


def _ip(*args: str, pid: int | None = None) -> None:
    prefix = ["nsenter", "-t", str(pid), "-n"] if pid else []
    subprocess.run([*prefix, "ip", *args], check=True, capture_output=True, text=True, timeout=10)


def veth_problem() -> str | None:
    """Why this machine cannot build the hosts (one line, for pytest.skip), or None."""
    for tool in ("unshare", "nsenter", "ip"):
        if shutil.which(tool) is None:
            return f"needs {tool} (util-linux / iproute2) to build hosts of network namespaces"
    probe = "ip link add hl-probe type veth peer name hl-probe1"
    try:
        result = subprocess.run(
            ["unshare", "-n", "sh", "-c", probe], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot make a private network namespace here: {exc}"
    if result.returncode != 0:
        return f"the kernel cannot make veth pairs in a private namespace: {result.stderr.strip()[:120]}"
    return None


def run_in_world(argv: Sequence[str], timeout: float, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run `argv` (from the repo root) as host A of a fresh private world; its output is captured."""
    return subprocess.run(
        [*WORLD, *argv], cwd=ROOT, capture_output=True, text=True, timeout=timeout, **kwargs
    )  # fmt: skip


@dataclass
class Host:
    """One namespace joined to A by a veth pair."""

    name: str
    index: int  # its veth's subnet: 10.200.<index>.0/24
    holder: subprocess.Popen[bytes]
    started: list[subprocess.Popen[Any]] = field(default_factory=list)

    @property
    def hostname(self) -> str:
        """What `socket.gethostname()` says on this host (Locust's worker ids start with it)."""
        return f"host-{self.name.lower()}"

    @property
    def address(self) -> str:
        """The host's own address, as A sees its connections come from."""
        return f"10.200.{self.index}.2"

    @property
    def gateway(self) -> str:
        """A's address on this host's link."""
        return f"10.200.{self.index}.1"

    @property
    def link(self) -> str:
        """A's end of the veth (what `cut` brings down)."""
        return f"hl-{self.name.lower()}"

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start `argv` in this host (cwd: the repo root unless given) in a process group of its own;
        the whole group is stopped when `hosts` ends (a shell loop's children too)."""
        kwargs.setdefault("cwd", ROOT)
        kwargs.setdefault("start_new_session", True)
        process = subprocess.Popen(["nsenter", "-t", str(self.holder.pid), "-n", "-u", *argv], **kwargs)
        self.started.append(process)
        return process

    def cut(self) -> None:
        """Cut the host off: A's end of its veth goes down (the host's end loses its carrier)."""
        _ip("link", "set", self.link, "down")

    def restore(self) -> None:
        """Bring the link back up; the host's address and route were never removed."""
        _ip("link", "set", self.link, "up")


def _in_private_world() -> bool:
    """Only `lo` and this module's own links exist here: a world `run_in_world` made, not the machine's
    namespace (whose interfaces lead off it)."""
    shown = subprocess.run(["ip", "-o", "link", "show"], check=True, capture_output=True, text=True).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in shown.splitlines() if ":" in line]
    return all(name == "lo" or name.startswith("hl-") for name in names)


def _join(name: str, index: int) -> Host:
    hostname = f"host-{name.lower()}"
    holder = subprocess.Popen(["unshare", "-n", "-u", "sh", "-c", 'hostname "$1" && exec sleep "$2"', "_",
                               hostname, str(HOLD_S)])  # fmt: skip
    host = Host(name, index, holder)
    try:
        deadline = time.monotonic() + 5
        # the holder execs sleep once its name is set: wait for that (its netns exists by then)
        while not _sleeping(holder.pid):
            if time.monotonic() > deadline:
                raise RuntimeError(f"host {name}: its namespace did not appear")
            time.sleep(0.01)
        _ip("link", "add", host.link, "type", "veth", "peer", "name", f"{host.link}-peer")
        _ip("link", "set", f"{host.link}-peer", "netns", str(holder.pid))
        _ip("addr", "add", f"{host.gateway}/24", "dev", host.link)
        _ip("link", "set", host.link, "up")
        pid = holder.pid
        _ip("link", "set", "lo", "up", pid=pid)
        _ip("link", "set", f"{host.link}-peer", "name", "eth0", pid=pid)
        _ip("addr", "add", f"{host.address}/24", "dev", "eth0", pid=pid)
        _ip("link", "set", "eth0", "up", pid=pid)
        _ip("route", "add", f"{HOST_A}/32", "via", host.gateway, pid=pid)
    except BaseException:
        holder.kill()
        holder.wait()
        raise
    return host


def _sleeping(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "sleep"
    except OSError:
        return False


def _stop(process: subprocess.Popen[Any]) -> None:
    """SIGTERM to the process's group (when it leads one) and the process, SIGKILL after 5 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(process.pid) == process.pid:
                os.killpg(process.pid, sig)
        if process.poll() is None:
            process.send_signal(sig)
        try:
            process.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def hosts(*names: str) -> Iterator[dict[str, Host]]:
    """Hosts `names` (e.g. "B", "C") joined to this world (host A); everything they ran is stopped at
    the end. Refuses to run outside a private network namespace."""
    if not _in_private_world():
        raise RuntimeError(
            "netns_hosts: run inside a private network namespace (run_in_world), never on the host"
        )
    built: dict[str, Host] = {}
    try:
        for index, name in enumerate(names, start=1):
            built[name] = _join(name, index)
        yield built
    finally:
        for host in built.values():
            for process in host.started:
                _stop(process)
            _stop(host.holder)
