"""What answers at `--host`: Hammerlab's target_server, or any other HTTP/1.1 service.

Hammerlab's target has `/stats`, `/ping` and `/admin`, which the comparison uses to reset it between
classes, inject faults and read the server columns. Any other service is checked with the user's own
request instead, once, before any load: it must answer 2xx or 3xx. The runner then says in one line
what is off for it, and refuses the scenarios that need the target to change itself.
"""

from __future__ import annotations

import http.client
from dataclasses import dataclass, field
from typing import Any

from comparison.scenarios import REGISTRY
from comparison.target import TargetError, check_reachable, request
from mitigations.checked_url import URLRefused, checked_url
from mitigations.outbound import fetch
from mitigations.request import RequestSpec

CHECK_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class TargetKind:
    hammerlab: bool
    status: int | None = None  # the user's request's answer (any other service)
    server: str = ""  # its Server header
    config: dict[str, Any] = field(default_factory=dict)  # a Hammerlab target's effective config

    def off_line(self, url: str, server_metrics: str = "") -> str:
        faults = ", ".join(_faulty())
        if server_metrics:
            return (
                f"{url} is not a Hammerlab target_server (no /stats): fault scenarios ({faults}) "
                f"and the reset between classes are off for it; the server columns come from {server_metrics}"
            )
        return (
            f"{url} is not a Hammerlab target_server (no /stats): fault scenarios ({faults}), "
            "the server columns (lag, sockets, in flight) and the reset between classes are "
            "off for it (--server-metrics URL reads them from a Prometheus endpoint)"
        )


def _faulty() -> list[str]:
    """The scenarios that change the target through its /admin endpoints."""
    return [name for name, scenario in REGISTRY.items() if scenario.fault]


def is_hammerlab_stats(body: Any) -> bool:
    return (
        isinstance(body, dict)
        and "schema" in body
        and isinstance(body.get("config"), dict)
        and "sync_work_ms" in body["config"]
    )


def inspect(url: str, spec: RequestSpec, allow_remote: bool = False) -> TargetKind:
    """Hammerlab's (its /stats and /ping answer) or another service that answers `spec`.
    Raises TargetError with one line when neither is reachable."""
    try:
        stats = request("GET", url + "/stats", timeout=2.0, allow_remote=allow_remote)
    except TargetError:
        stats = None
    if is_hammerlab_stats(stats):
        check_reachable(url, allow_remote=allow_remote)
        return TargetKind(True, config=dict(stats["config"]))
    return TargetKind(False, *send_once(url, spec, allow_remote))


def send_once(url: str, spec: RequestSpec, allow_remote: bool = False) -> tuple[int, str]:
    """The user's request, once: (status, Server header) for a 2xx/3xx answer, else TargetError. Through
    the loopback guard, with no redirect followed and no proxy."""
    try:
        target = checked_url(url, allow_remote).join(spec.path)
        answer = fetch(target, spec.method, spec.body, dict(spec.headers), CHECK_TIMEOUT_S, 1 << 20)
    except URLRefused as refused:
        raise TargetError(str(refused)) from None
    except (OSError, http.client.HTTPException) as error:
        reason = error or type(error).__name__
        raise TargetError(f"--host {url} is not reachable ({spec.line} failed: {reason})") from None
    if answer.status >= 400:
        raise TargetError(
            f"--host {url} answered {answer.status} to {spec.line}; a load test needs a request that "
            "succeeds (set --path, --method, --header, --body)"
        )
    return answer.status, answer.headers.get("server", "")


def scenario_problem(scenario: str, url: str) -> str | None:
    """One line when the scenario needs a Hammerlab target and `url` is not one."""
    fault = REGISTRY[scenario].fault
    if not fault:
        return None
    others = [name for name, s in REGISTRY.items() if s.plain]
    return (
        f"--scenario {scenario} {fault}, which only Hammerlab's target_server has; "
        f"{url} is not one (use {', '.join(others[:-1])} or {others[-1]})"
    )
