"""The lab's client applications, one per mitigation. Pick one by class name:

    locust --headless -u 1 -t 30s ThrottledClient
    locust --class-picker            # web UI on :8089, choose the class there

Each is a declaration only: the machinery lives in `locust_plugin` and `mitigations`.
"""

from locust_plugin.users import MitigatedClient


class HammerClient(MitigatedClient):
    """No mitigation: the seed's default client, launching on schedule whatever happens."""


class ThrottledClient(MitigatedClient):
    """MAX_CONCURRENT: at most --max-concurrent in flight; the rest cancelled (or queued)."""

    mitigations = ("throttle",)


class BreakerClient(MitigatedClient):
    """A circuit breaker: pause after a recent error (the seed), or a resilience4j-style rate breaker."""

    mitigations = ("breaker",)


class PooledClient(MitigatedClient):
    """maxSockets: at most --max-sockets connections; requests beyond wait for a free one."""

    mitigations = ("pooled",)


class TimeoutClient(MitigatedClient):
    """REQUEST_TIMEOUT: connect, read and total deadlines, counted from launch."""

    mitigations = ("timeout",)


class CombinedClient(MitigatedClient):
    """The four seed mitigations plus safe retries, in the pipeline's fixed order."""

    mitigations = ("retry", "breaker", "throttle", "pooled", "timeout")


class AdaptiveClient(MitigatedClient):
    """Finds its own concurrency limit from latency (gradient) or loss (AIMD), and the server's lag header."""

    mitigations = ("adaptive", "timeout")


class SreThrottleClient(MitigatedClient):
    """Google SRE client-side throttling: reject locally as accepts fall behind requests."""

    mitigations = ("sre", "timeout")


class RetryClient(MitigatedClient):
    """Safe retries: full-jitter backoff, Retry-After, only retryable failures, and a 10 % budget."""

    mitigations = ("retry", "timeout")


class NaiveRetryClient(MitigatedClient):
    """What production often runs: a timeout per attempt and immediate retries of every failure, no
    budget. The retry storm, and the sustaining effect of a metastable failure (docs/metastable.md)."""

    mitigations = ("naive-retry", "attempt-timeout")


class DeferredClient(MitigatedClient):
    """A throttle that drops nothing: what --max-concurrent sheds waits on disk and is replayed later."""

    mitigations = ("throttle", "defer", "timeout")


class HedgedClient(MitigatedClient):
    """CombinedClient plus hedged requests: a second copy of a call still unanswered at the p95, within a
    5 % budget, paused at the first sign of overload (docs/hedging.md)."""

    mitigations = ("retry", "hedge", "breaker", "throttle", "pooled", "timeout")


class NaiveHedgeClient(MitigatedClient):
    """Hedging with no budget and no overload pause, and nothing under it holding load back (no breaker,
    no throttle): every slow call sends a second copy. At overload that is a storm (docs/hedging.md)."""

    mitigations = ("naive-hedge", "timeout")
