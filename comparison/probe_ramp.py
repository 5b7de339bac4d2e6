"""A capacity probe that is gentle with a real service: ramp concurrency, stop at the first sign of pain.

Hammerlab's own target is saturated by `probe.measure_capacity` (48 closed-loop workers at once): that
is fine for a lab server restarted for every class, not for someone's service. For any other target
this probe runs closed-loop workers in steps of 1, 2, 4, 8, ... for `step_s` seconds each, never
sending faster than `max_rps` in total (`--max-probe-rps`, default 500), and stops at the first step
where

- any request failed (a server error, a timeout, a 4xx: the service is hurting, or the request is wrong);
- the p99 latency went over the SLO (`--slo-ms`);
- the rate reached the ceiling (then C is at least the ceiling: the report says so);
- two doublings in a row added less than `PLATEAU_GAIN` over the best step so far (the knee is behind
  us). One is not enough: a step on a busy machine, or beside a noisy neighbour, can come out low, and a
  ramp stopped by one such step named a knee of 2 where the service's was 16 (a CI run of the test).

The knee is the good step with the highest throughput; its throughput is C. Every step is kept for
summary.md: concurrency, throughput, p50, p99. Anchor: the usual "step load until the SLO breaks"
ramp (k6 `ramping-arrival-rate`, Gatling `incrementConcurrentUsers`), closed-loop so the probe itself
never queues more than `concurrency` requests at the service.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import gevent

from mitigations.core import SYSTEM_CLOCK
from mitigations.request import RequestSpec
from mitigations.timeout import Timeouts
from mitigations.transport import TransportConfig, make_transport

STEPS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
SETTLE_SHARE = 0.2  # the first fifth of each step is not measured: new workers' first round
PLATEAU_GAIN = 1.1  # doubling the workers must add at least 10 % throughput over the best so far
PLATEAU_STEPS = 2  # ... or the ramp stops after this many doublings in a row that did not
CEILING_SHARE = 0.95
REQUEST_TIMEOUT_S = 10.0


class RampError(RuntimeError):
    """The first step already failed: no capacity can be named. One line for the user."""


@dataclass(frozen=True)
class Step:
    concurrency: int
    throughput_rps: float
    p50_ms: float | None
    p99_ms: float | None
    ok: int
    failed: int
    failure_kinds: str = ""


@dataclass(frozen=True)
class RampResult:
    capacity_rps: float
    knee: int  # the knee step's concurrency
    stopped: str  # why the ramp stopped, one phrase
    steps: list[Step] = field(default_factory=list)
    step_s: float = 1.0
    max_rps: float = 500.0
    at_ceiling: bool = False

    def describe(self) -> str:
        bound = "at least " if self.at_ceiling else ""
        return (
            f"capacity C = {bound}{self.capacity_rps:.1f} requests/s, the knee at concurrency {self.knee} "
            f"(ramp probe: {len(self.steps)} steps of {self.step_s:g} s, stopped: {self.stopped})"
        )

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "source": "ramp probe"}


def markdown(record: dict[str, Any]) -> str:
    """The probe's table for summary.md, from run.json's capacity record."""
    lines = [
        "## Capacity probe",
        "",
        f"Closed-loop ramp, {record['step_s']:g} s per step, at most {record['max_rps']:g} requests/s; "
        f"stopped: {record['stopped']}. The knee is concurrency {record['knee']}: C = "
        f"{'at least ' if record.get('at_ceiling') else ''}{record['capacity_rps']:.1f} requests/s.",
        "",
        "| concurrency | throughput/s | p50 ms | p99 ms | ok | failed |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for step in record["steps"]:
        mark = " (knee)" if step["concurrency"] == record["knee"] else ""
        p50 = "" if step["p50_ms"] is None else f"{step['p50_ms']:.1f}"
        p99 = "" if step["p99_ms"] is None else f"{step['p99_ms']:.1f}"
        failed = f"{step['failed']}" + (f" ({step['failure_kinds']})" if step.get("failure_kinds") else "")
        lines.append(
            f"| {step['concurrency']}{mark} | {step['throughput_rps']:.1f} | {p50} | {p99} | {step['ok']} | "
            f"{failed} |"
        )
    return "\n".join(lines) + "\n"


def _rank(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(share * len(ordered))) - 1]


class _Pacer:
    """Hands out send slots no faster than `rate` per second, shared by every worker."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next_at = SYSTEM_CLOCK.now()

    def wait(self) -> None:
        now = SYSTEM_CLOCK.now()
        slot = max(now, self.next_at)
        self.next_at = slot + self.interval
        if slot > now:
            gevent.sleep(slot - now)


def plateaued(throughputs: list[float]) -> bool:
    """The last `PLATEAU_STEPS` steps each added less than `PLATEAU_GAIN` over the best step before it."""
    if len(throughputs) <= PLATEAU_STEPS:
        return False
    return all(
        throughputs[i] < PLATEAU_GAIN * max(throughputs[:i])
        for i in range(len(throughputs) - PLATEAU_STEPS, len(throughputs))
    )


def ramp(
    url: str,
    request: RequestSpec,
    slo_ms: float,
    max_rps: float = 500.0,
    step_s: float = 1.0,
    should_stop: Callable[[], bool] = lambda: False,
    steps: tuple[int, ...] = STEPS,
    allow_remote: bool = False,
) -> RampResult:
    """Ramp against `url` (see the module doc). Raises RampError when the first step fails."""
    clock = SYSTEM_CLOCK
    transport = make_transport(
        "fast",
        TransportConfig(
            base_url=url, timeouts=Timeouts(connect=2.0, read=REQUEST_TIMEOUT_S), allow_remote=allow_remote
        ),
        clock,
    )
    pacer = _Pacer(max_rps)
    window = {"start": math.inf, "end": -math.inf}
    answers: list[tuple[float, bool, str]] = []  # latency ms, ok, kind: answers finished in the window
    running = {"on": True}

    def worker() -> None:
        while running["on"] and not should_stop():
            pacer.wait()
            launched = clock.now()
            outcome = transport.send(request.call(launched, deadline=launched + REQUEST_TIMEOUT_S))
            if window["start"] <= outcome.finished_at <= window["end"]:
                answers.append(((outcome.finished_at - launched) * 1000, outcome.ok, outcome.kind))

    greenlets: list[gevent.Greenlet] = []
    measured: list[Step] = []
    stopped = f"reached the last step ({steps[-1]} workers)"
    at_ceiling = False
    try:
        for concurrency in steps:
            if should_stop():
                stopped = "interrupted"
                break
            greenlets += [gevent.spawn(worker) for _ in range(concurrency - len(greenlets))]
            start = clock.now()
            answers.clear()
            window["start"], window["end"] = start + SETTLE_SHARE * step_s, start + step_s
            gevent.sleep(step_s)
            seconds = (1 - SETTLE_SHARE) * step_s
            good = [latency for latency, ok, _ in answers if ok]
            kinds: dict[str, int] = {}
            for _, ok, kind in answers:
                if not ok:
                    kinds[kind] = kinds.get(kind, 0) + 1
            step = Step(
                concurrency,
                len(good) / seconds,
                _rank(good, 0.5),
                _rank(good, 0.99),
                len(good),
                sum(kinds.values()),
                ";".join(f"{k}={n}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1])),
            )
            measured.append(step)
            if step.failed:
                stopped = f"{step.failed} failed at concurrency {concurrency} ({step.failure_kinds})"
                break
            if step.p99_ms is not None and step.p99_ms > slo_ms:
                stopped = f"p99 {step.p99_ms:.0f} ms over the SLO {slo_ms:g} ms at concurrency {concurrency}"
                break
            if step.throughput_rps >= CEILING_SHARE * max_rps:
                stopped = f"reached the ceiling of {max_rps:g} requests/s (--max-probe-rps)"
                at_ceiling = True
                break
            if plateaued([s.throughput_rps for s in measured]):
                stopped = f"throughput stopped growing at concurrency {concurrency}"
                break
    finally:
        running["on"] = False
        gevent.killall(greenlets, block=True, timeout=REQUEST_TIMEOUT_S + 2)
        transport.close()
    good_steps = [s for s in measured if not s.failed and (s.p99_ms is None or s.p99_ms <= slo_ms) and s.ok]
    if not good_steps:
        first = measured[0] if measured else None
        why = stopped if first is not None else "it was interrupted"
        raise RampError(
            f"the ramp probe found no good step against {url} ({request.line}): {why}; "
            "check --path/--method/--header, or pass --capacity N to skip the probe"
        )
    knee = max(good_steps, key=lambda s: s.throughput_rps)
    return RampResult(knee.throughput_rps, knee.concurrency, stopped, measured, step_s, max_rps, at_ceiling)
