"""Issue 23 for real: Locust workers on other hosts, made of network namespaces (tests/netns_hosts.py).

The target and the master live on host A (10.200.0.1) of a private world; workers run on B and C,
joined to A by veth pairs. Nothing leaves the machine: every address exists only in those namespaces.
"""

from __future__ import annotations

import json
import sys

import pytest

from tests.netns_hosts import run_in_world, veth_problem

PROBLEM = veth_problem()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(PROBLEM is not None, reason=PROBLEM or "")]
LEDGER = ("ok", "server_errors", "shed", "unfinished")


def in_world(*args: str, timeout: float) -> dict[str, object]:
    result = run_in_world([sys.executable, "tests/netns_fleet.py", *args], timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_worker_checks_the_masters_host_with_its_own_allow_remote():
    got = in_world("guard", timeout=120)
    # B's own command line has no --allow-remote: the master's never reaches it
    assert got["refusing_rc"] == 2, got
    [line] = got["refusing_lines"]
    assert "10.200.0.1" in line and "not a loopback address" in line and "--allow-remote" in line
    assert got["from_B"] == 0, got  # not one request from the refusing worker's address
    # C allowed it on its own command line: it loads the host
    assert got["allowed_rc"] == 0 and not got["allowed_errors"], got
    assert got["from_C"] >= 20, got  # 4 s at 10/s (the master rebalanced B's user onto C)
