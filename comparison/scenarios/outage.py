"""`outage`: 0.8 x C with a 10 s outage (503s) injected mid-run through the target's /admin/faults.

It fills two columns: recovery_s, from the outage's end to the start of the first 1 s window wholly
after it in which the client's goodput (PREFIX_mitigations.csv) is back to 90 % of the offered rate
("never" when it was not before the run ended); and outage_amplification, the requests the server
received (its requests_total, PREFIX_server.csv) per request the client launched (launched_total),
inside the outage window, each counter interpolated at the window's ends: a retry storm shows here.
Its sentences tell who threw the most at the failing server, who let the fewest fail, and recovery.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from comparison.counters import rate_between
from comparison.errors import ConfigError, num
from comparison.plan import LoadPlan
from comparison.readers import ClientRow, ServerRow, read_client, read_server
from comparison.scenarios.base import RunSettings, Scenario, Window
from comparison.summary import NOT_RECOVERED, RECOVERY_SHARE, RECOVERY_WINDOW_S, ClassResult, Summary
from comparison.target import inject_outage
from comparison.words import top_kind

OUTAGE_S = 10.0
MARGIN_S = 5.0  # at least this much healthy traffic before and after the outage
MIN_DURATION_S = OUTAGE_S + 2 * MARGIN_S


class Outage(Scenario):
    name = "outage"
    order = 40
    help = "0.8 x C with a 10 s outage (503s) injected mid-run"
    multiplier = 0.8
    fault = "injects a 10 s outage through /admin/faults"

    def check(self, config: RunSettings) -> None:
        if config.duration_s < MIN_DURATION_S:
            raise ConfigError(
                "--duration",
                f"{num(config.duration_s)} s is too short for the {self.name} scenario: it needs at least "
                f"{num(MIN_DURATION_S)} s (5 s before, the 10 s outage, 5 s after)",
            )

    def shape(self, config: RunSettings, capacity_rps: float, reduced_rps: float | None) -> LoadPlan:
        plan = super().shape(config, capacity_rps, reduced_rps)
        return replace(plan, outage_at_s=round((config.duration_s - OUTAGE_S) / 2, 1), outage_s=OUTAGE_S)

    def event(
        self, url: str, plan: LoadPlan, config: RunSettings, entry: dict[str, Any]
    ) -> Callable[[], Window] | None:
        def outage() -> Window:
            window = inject_outage(url, plan.outage_s or 0, config.allow_remote)
            entry["outage"] = list(window)
            return window

        return outage

    def adjust(self, summary: Summary, result: ClassResult, plan: LoadPlan, config: RunSettings) -> Summary:
        if result.outage is None:
            return summary
        client = read_client(result.files.mitigations, result.client)
        found = recovery_time(client, result.outage[1], plan.offered_rps)
        server = read_server(result.files.server)
        return replace(
            summary,
            recovery_s=NOT_RECOVERED if found is None else max(0.0, found),
            outage_amplification=window_amplification(server, client, result.outage),
        )

    def event_words(self, plan: LoadPlan) -> str:
        return f", with a {plan.outage_s:g} s outage from {plan.outage_at_s:g} s" if plan.outage_s else ""

    def story(self, summaries: Sequence[Summary], plan: LoadPlan) -> list[str] | None:
        if not plan.outage_s:
            return None
        return [*_outage(summaries), _recovery(summaries)]


def recovery_time(
    rows: Sequence[ClientRow], outage_end: float, offered_rps: float, window_s: float = RECOVERY_WINDOW_S
) -> float | None:
    """Seconds from `outage_end` to the start of the first `window_s` window, wholly after it, in which
    goodput reached RECOVERY_SHARE x `offered_rps`. None when that never happened before the run ended."""
    target = RECOVERY_SHARE * offered_rps
    ordered = sorted(rows, key=lambda r: r.timestamp)
    start = 0
    for end, row in enumerate(ordered):
        # the window starts at the latest sample at least window_s before `row`, and after the outage
        while start + 1 < end and ordered[start + 1].timestamp <= row.timestamp - window_s:
            start += 1
        first = ordered[start]
        if first.timestamp < outage_end or row.timestamp - first.timestamp < window_s * 0.99:
            continue
        rate = (row.good_total - first.good_total) / (row.timestamp - first.timestamp)
        if rate >= target:
            return first.timestamp - outage_end
    return None


def window_amplification(
    server: Sequence[ServerRow], client: Sequence[ClientRow], window: Window
) -> float | None:
    """Requests the server received / requests the client launched, inside `window` (unix seconds)."""
    start, end = window
    received = rate_between(
        [(row.timestamp, row.requests_total) for row in server if row.requests_total is not None], start, end
    )
    launched = rate_between([(row.timestamp, row.launched_total) for row in client], start, end)
    if received is None or not launched:
        return None
    return received / launched


def _outage(summaries: Sequence[Summary]) -> list[str]:
    """During an outage lag says little; what matters is how much each client threw at a failing server."""
    loudest = max(summaries, key=lambda s: (s.server_errors, s.wire_attempts))
    sentences = [
        f"{loudest.client} {_attempts(loudest)}, and {loudest.server_errors:,} failed"
        f"{f' (mostly {top_kind(loudest.server_error_kinds)})' if loudest.server_errors else ''}."
    ]
    others = [s for s in summaries if s is not loudest]
    if others:
        quietest = min(others, key=lambda s: (s.server_errors, -s.goodput_rps))
        held = (
            f", holding back {quietest.shed:,} at the client (mostly {top_kind(quietest.shed_kinds)})"
            if quietest.shed
            else ""
        )
        sentences.append(
            f"{quietest.client} let the fewest fail, {quietest.server_errors:,}{held}, "
            f"and served {quietest.goodput_rps:,.0f} requests/s over the run."
        )
    return sentences


def _attempts(s: Summary) -> str:
    during = (
        f", {s.outage_amplification:.2f} x during the outage" if s.outage_amplification is not None else ""
    )
    if s.launched:
        return (
            f"put {s.wire_attempts:,} requests on the wire for {s.launched:,} it launched "
            f"({s.wire_attempts / s.launched:.2f} x{during})"
        )
    if during:
        return f"put {s.wire_attempts:,} requests on the wire ({during[2:]})"
    return f"put {s.wire_attempts:,} requests on the wire"


def _recovery(summaries: Sequence[Summary]) -> str:
    timed = [s for s in summaries if isinstance(s.recovery_s, float)]
    never = [s.client for s in summaries if s.recovery_s == NOT_RECOVERED]
    parts = []
    if timed:
        fast = min(timed, key=lambda s: s.recovery_s)  # type: ignore[arg-type, return-value]
        slow = max(timed, key=lambda s: s.recovery_s)  # type: ignore[arg-type, return-value]
        parts.append(
            f"After the outage ended, {fast.client} was back to 90 % of the offered load in "
            f"{fast.recovery_s:.2f} s"
        )
        if slow is not fast:
            parts.append(f"{slow.client} took the longest, {slow.recovery_s:.2f} s")
    if never:
        parts.append(f"{', '.join(never)} did not get back there before the run ended")
    if not parts:
        return "Recovery after the outage could not be measured: the client samples are missing."
    return "; ".join(parts) + "."


SCENARIO = Outage()
