"""A locustfile for the defer crash test: DeferredClient sending POSTs that carry an Idempotency-Key.

    HAMMERLAB_TEST_RUN=a locust -f tests/defer_locustfile.py ... KeyedDeferredClient

Keys are `<run>-<n>` (n counts from 0 per process), the body is `n`, so a test can tell every call
apart at the server and in the defer queue's file.
"""

import itertools
import os

from locust_plugin.users import MitigatedClient
from mitigations.core import Call


class KeyedDeferredClient(MitigatedClient):
    """DeferredClient's pipeline (throttle, defer, timeout) with one key per call."""

    mitigations = ("throttle", "defer", "timeout")

    def on_start(self) -> None:
        super().on_start()
        self._numbers = itertools.count()
        self._run = os.environ.get("HAMMERLAB_TEST_RUN", "run")

    def make_call(self, launched_at: float) -> Call:
        n = next(self._numbers)
        headers = {"Idempotency-Key": f"{self._run}-{n}"}
        return Call("POST", self.path, launched_at=launched_at, headers=headers, body=str(n).encode())


class UnkeyedDeferredClient(MitigatedClient):
    """The same, with no Idempotency-Key: the body `<run>-<n>` alone tells the calls apart. A POST that
    the server must never see twice."""

    mitigations = ("throttle", "defer", "timeout")

    def on_start(self) -> None:
        super().on_start()
        self._numbers = itertools.count()
        self._run = os.environ.get("HAMMERLAB_TEST_RUN", "run")

    def make_call(self, launched_at: float) -> Call:
        body = f"{self._run}-{next(self._numbers)}".encode()
        return Call("POST", self.path, launched_at=launched_at, body=body)
