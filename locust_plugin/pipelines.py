"""Builds a client class's pipeline from its mitigation names and the run's options.

The order is fixed and documented, outermost first:

    defer → retry → hedge → breaker → limiter (throttle | adaptive | sre) → socket pool → transport

  - defer is outermost, so a replayed call passes every rule again (retry budget, breaker, limiter,
    deadline) and only what the limiter or breaker finally refuses is kept; it needs one of them;
  - retry is outermost (as resilience4j recommends), so every attempt passes the breaker and the
    limiter again: an open breaker sheds a retry instead of sending it;
  - hedge sits inside retry, so a hedge is one more copy of a logical call and never of a retry (one
    hedge per call; the retry budget still counts logical calls), and a call whose copies both failed
    can still be retried; it sits outside the breaker and the limiter, so the hedge is admitted like
    any attempt: an open breaker or a full throttle sheds it (and that shed pauses hedging), and the
    loser's slot comes back when it is cancelled; outside the per-attempt timeout, so each copy gets
    its own;
  - the breaker sits outside the limiter so that an open circuit sheds before a call takes a slot;
  - the socket pool is innermost, next to the transport whose connection pool it sizes, so only calls
    about to go on the wire hold a socket;
  - a per-attempt timeout (`attempt-timeout`) sits just inside retry, so every attempt gets a fresh one;
  - with `--criticality-mix`, the throttle and the adaptive limit keep the critical share of their
    limit for critical calls and serve queued critical calls first (docs/criticality.md); the socket
    pool's queue serves critical calls first too, with no reserve;
  - the total deadline is not a layer: the pipeline stamps it on the call at entry, counted from launch,
    and every waiting layer and the transport honour it (see `mitigations.timeout`). An attempt goes on
    the wire only with at least `--min-wire-share` of it left (see `mitigations.core`).

Every class has a connect timeout (`--connect-timeout-ms`, default 3 s): every real client has one, if
only the kernel's limit on SYN retries (about 127 s on Linux, 75 s on macOS, where the seed saw
`connect ETIMEDOUT`); it is shortened so that a short lab run shows it. The `timeout` mitigation adds
what the seed's REQUEST_TIMEOUT added: a read timeout and a total deadline counted from launch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from locust_plugin import options
from mitigations.adaptive import (
    AdaptiveLimit,
    AdaptiveLimitConfig,
    Aimd,
    AimdConfig,
    Gradient,
    GradientConfig,
    Knee,
    KneeConfig,
    LimitAlgorithm,
    Vegas,
    VegasConfig,
)
from mitigations.admission import GatedPolicy
from mitigations.breaker import CircuitBreaker, CircuitBreakerConfig
from mitigations.core import Clock, Pipeline, Policy
from mitigations.defer import Defer
from mitigations.defer_checks import default_directory
from mitigations.defer_config import DeferConfig
from mitigations.hedge import Hedge, HedgeConfig
from mitigations.retry import Retry, RetryBudgetConfig, RetryConfig
from mitigations.socket_pool import SocketPool, SocketPoolConfig
from mitigations.sre_throttle import SreThrottle, SreThrottleConfig
from mitigations.throttle import Throttle, ThrottleConfig
from mitigations.timeout import AttemptTimeout, AttemptTimeoutConfig, Timeouts
from mitigations.transport import TransportConfig, make_transport

ORDER = (
    "defer", "retry", "naive-retry", "hedge", "naive-hedge", "attempt-timeout", "breaker", "throttle",
    "adaptive", "sre", "pooled", "timeout",
)  # fmt: skip


def _ms(value: int) -> float:
    return value / 1000.0


def throttle(read: Callable[[str], Any]) -> Policy:
    return Throttle(
        ThrottleConfig(
            max_concurrent=read("max_concurrent"),
            mode=read("throttle_mode"),
            queue_size=read("queue_size"),
            queue_timeout=_ms(read("queue_timeout_ms")),
        )
    )


def breaker(read: Callable[[str], Any]) -> Policy:
    window_type, window_size = read("breaker_window")
    slow_ms = read("slow_call_ms")
    return CircuitBreaker(
        CircuitBreakerConfig(
            mode=read("breaker_mode"),
            recent_error_delay=_ms(read("recent_error_delay_ms")),
            failure_rate_threshold=read("failure_rate_threshold"),
            window_type=window_type,
            window_size=int(window_size) if window_type == "count" else window_size,
            minimum_calls=read("min_calls"),
            slow_call_duration=_ms(slow_ms) if slow_ms else None,
            permitted_calls_in_half_open=read("half_open_calls"),
            open_duration=_ms(read("open_ms")),
            half_open_max_wait=_ms(read("half_open_max_wait_ms")) or None,
        )
    )


def pooled(read: Callable[[str], Any]) -> Policy:
    return SocketPool(SocketPoolConfig(max_sockets=read("max_sockets"), keep_alive=read("keep_alive")))


def adaptive(read: Callable[[str], Any]) -> Policy:
    lag = read("lag_threshold_ms") or None
    share = read("adaptive_slo_share") / 100.0
    bounds = {
        "initial_limit": read("adaptive_initial_limit"),
        "min_limit": read("adaptive_min_limit"),
        "max_limit": read("adaptive_max_limit"),
        "lag_threshold_ms": lag,
        "slo_target": _ms(read("slo_ms")) * share if share else None,  # the SLO as the limit's target
    }
    algorithm: LimitAlgorithm
    name = read("adaptive_algorithm")
    if name == "aimd":
        algorithm = Aimd(AimdConfig(**bounds))
    elif name == "vegas":
        algorithm = Vegas(VegasConfig(**bounds))
    elif name == "knee":
        algorithm = Knee(
            KneeConfig(
                **bounds,
                tolerance=read("adaptive_tolerance") / 100.0,
                probe_interval=read("adaptive_probe_interval_s"),
                dither=read("adaptive_dither") / 100.0,
                elasticity=read("adaptive_elasticity") / 100.0,
                fleet_size=read("adaptive_fleet_size"),
            )
        )
    else:
        algorithm = Gradient(GradientConfig(**bounds))
    config = AdaptiveLimitConfig(
        mode=read("adaptive_mode"), queue_timeout=_ms(read("adaptive_queue_timeout_ms"))
    )
    return AdaptiveLimit(algorithm, config)


def sre(read: Callable[[str], Any]) -> Policy:
    return SreThrottle(SreThrottleConfig(k=read("sre_k"), window=read("sre_window_s")))


def _retry_methods(read: Callable[[str], Any]) -> frozenset[str] | None:
    names = read("retry_methods")
    return None if names == ("*",) else frozenset(names)


def retry(read: Callable[[str], Any]) -> Policy:
    return Retry(
        RetryConfig(
            max_attempts=read("retry_attempts"),
            base=_ms(read("retry_base_ms")),
            cap=_ms(read("retry_cap_ms")),
            budget=RetryBudgetConfig(ratio=read("retry_budget") / 100.0),
            methods=_retry_methods(read),
        )
    )


def naive_retry(read: Callable[[str], Any]) -> Policy:
    naive = RetryConfig.naive(read("retry_attempts"))
    return Retry(dataclasses.replace(naive, methods=_retry_methods(read)))


def hedge(read: Callable[[str], Any]) -> Policy:
    delay_ms, budget = read("hedge_delay_ms"), read("hedge_budget")
    return Hedge(
        HedgeConfig(
            delay=_ms(delay_ms) if delay_ms else None,
            percentile=read("hedge_percentile"),
            window=read("hedge_window"),
            budget=RetryBudgetConfig(ratio=budget / 100.0) if budget else None,
            pause=_ms(read("hedge_pause_ms")),
        )
    )


def naive_hedge(read: Callable[[str], Any]) -> Policy:
    """The same delay as `hedge`, no budget and no pause (`HedgeConfig.naive`): the storm, for contrast."""
    delay_ms = read("hedge_delay_ms")
    naive = HedgeConfig.naive(_ms(delay_ms) if delay_ms else None)
    return Hedge(dataclasses.replace(naive, percentile=read("hedge_percentile"), window=read("hedge_window")))


def attempt_timeout(read: Callable[[str], Any]) -> Policy:
    return AttemptTimeout(AttemptTimeoutConfig(timeout=_ms(read("attempt_timeout_ms"))))


POLICY_BUILDERS: dict[str, Callable[[Callable[[str], Any]], Policy]] = {
    "retry": retry,
    "naive-retry": naive_retry,
    "hedge": hedge,
    "naive-hedge": naive_hedge,
    "attempt-timeout": attempt_timeout,
    "breaker": breaker,
    "throttle": throttle,
    "adaptive": adaptive,
    "sre": sre,
    "pooled": pooled,
}
MITIGATIONS = ("defer", *POLICY_BUILDERS, "timeout")
DEFER_SOURCES = ("throttle", "adaptive", "sre", "breaker")
PRIORITISED = ("throttle", "adaptive")  # the limiters that refuse sheddable calls first (criticality)


def defer(read: Callable[[str], Any], policies: dict[str, Policy], host: str = "") -> Policy:
    """The defer layer, reading free slots from the pipeline's limiter. Without `--defer-dir`, its
    folder is this user's own for `host` (`defer_checks.default_directory`)."""
    if not any(name in policies for name in DEFER_SOURCES):
        raise ValueError("defer keeps what a limiter or breaker sheds: add throttle, adaptive, sre, breaker")
    limiter = next((policies[name] for name in ("throttle", "adaptive", "sre") if name in policies), None)
    chosen = read("defer_dir")
    config = DeferConfig(
        directory=chosen or default_directory(host),
        private=not chosen,
        max_age=read("defer_max_age_s"),
        max_queue=read("defer_max_queue"),
        priority=read("defer_priority"),
    )
    return Defer(config, limiter)


@dataclass
class BuiltPipeline:
    pipeline: Pipeline
    policies: dict[str, Policy]


def build_pipeline(
    mitigations: tuple[str, ...], parsed_options: Any, host: str, clock: Clock
) -> BuiltPipeline:
    """The pipeline for one client class. Raises `OptionError`/`ValueError` with one readable line."""
    unknown = [name for name in mitigations if name not in MITIGATIONS]
    if unknown:
        raise ValueError(f"unknown mitigation {unknown[0]!r}; known: {', '.join(MITIGATIONS)}")

    def read(dest: str) -> Any:
        return options.read(parsed_options, dest)

    chosen = [name for name in ORDER if name in mitigations]
    policies = {name: POLICY_BUILDERS[name](read) for name in chosen if name in POLICY_BUILDERS}
    mix, first = read("criticality_mix"), read("shed_sheddable_first")
    for name in (*PRIORITISED, "pooled"):  # --criticality-mix: the critical share of the limit is theirs
        if isinstance(gated := policies.get(name), GatedPolicy):
            if not first:
                gated.ignore_criticality()
            elif mix and name in PRIORITISED:
                gated.reserve_for_critical(mix[0])
    if "defer" in mitigations:
        policies = {"defer": defer(read, policies, host), **policies}
    connect = _ms(read("connect_timeout_ms"))
    if "timeout" in mitigations:
        timeouts = Timeouts(connect, _ms(read("read_timeout_ms")), _ms(read("request_timeout_ms")))
    else:
        timeouts = Timeouts(connect=connect)
    pool = policies.get("pooled")
    transport = make_transport(
        read("http_client"),
        TransportConfig(
            base_url=host,
            max_connections=pool.config.max_sockets if isinstance(pool, SocketPool) else None,
            keep_alive=read("keep_alive"),
            timeouts=timeouts,
            count_429=read("count_429"),
            allow_remote=bool(getattr(parsed_options, "allow_remote", False)),
        ),
        clock,
    )
    pipeline = Pipeline(
        list(policies.values()),
        transport,
        clock=clock,
        total_timeout=timeouts.total,
        min_wire_share=read("min_wire_share") / 100.0,
    )
    return BuiltPipeline(pipeline, policies)
