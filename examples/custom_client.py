"""Your own locustfile with Hammerlab's mitigations: pick policies by name, shape your own requests.

    locust -f examples/custom_client.py --headless -u 1 -t 20s --host http://127.0.0.1:3000 \\
        --max-concurrent 8 --breaker-mode rate

Every Hammerlab option (--launch-rate, --max-concurrent, ...) applies, and the web UI can edit them.
"""

import itertools

from locust_plugin.users import MitigatedClient
from mitigations.core import Call


class CheckoutClient(MitigatedClient):
    """Breaker outside a throttle, with safe retries, sending a mix of cheap and expensive requests."""

    mitigations = ("retry", "breaker", "throttle", "timeout")

    def on_start(self) -> None:
        super().on_start()
        self._paths = itertools.cycle(["/doWork", "/doWork", "/ping"])

    def make_call(self, launched_at: float) -> Call:
        path = next(self._paths)
        return Call("GET", path, launched_at=launched_at, name="work" if path == "/doWork" else "health")
