"""Issue 18, part 1, for real, in a private network namespace (tests/netns_outbound.py, FIELD-NOTES §6):
not one request reaches 10.200.0.1 through any seam found, where the code before it sent 115."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.locust_run import ROOT
from tests.test_web_ui_guard import NETNS

pytestmark = pytest.mark.slow


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux) and root")
def test_no_seam_sends_anything_off_loopback():
    result = subprocess.run(
        [*NETNS, sys.executable, "tests/netns_outbound.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got["reached_in_all"] == 0, got
    assert got["1_headless_backslash_userinfo"]["rc"] == 2
    refused = got["1_senders_backslash_userinfo"]["did"]
    assert set(refused.values()) <= {"URLRefused", "TargetError", 403}, refused
    redirected = got["2_senders_redirected"]["did"]
    assert redirected["requests_transport"] == redirected["fast_transport"] == redirected["sampler"] == 302
    assert got["3_user_then_swarm_empty_host"]["swarm"] == 400
    assert got["3_two_classes_two_hosts"]["swarm"] == 400
    assert got["4_foreign_host_index"] == got["4_foreign_host_swarm"] == 403
    assert got["4_form_allow_remote"]["swarm"] == [400, 400]
    assert got["4_rerun_stored_allow_remote"]["rc"] == 2
