"""A locustfile with two classes on different hosts, for tests/netns_outbound.py (issue 18, item 3):
one on the loopback target (HAMMERLAB_TEST_HERE), one off loopback (HAMMERLAB_TEST_THERE)."""

import os

from locust_plugin.users import MitigatedClient


class HereClient(MitigatedClient):
    host = os.environ.get("HAMMERLAB_TEST_HERE", "http://127.0.0.1:3000")


class ThereClient(MitigatedClient):
    host = os.environ.get("HAMMERLAB_TEST_THERE", "http://10.200.0.1:80")
