"""A few sentences that say what the table shows, written from the numbers of this run.

The verdict comes first: the client that served the most within the SLO, then why each of the others
served less (late, failed, shed or unfinished, whichever cost it most). Then the server's side: the
client with the worst lag, the one that kept the server healthiest, and recovery where the scenario has
an outage. Each sentence picks its subject from the data, so a different run reads differently.
"""

from __future__ import annotations

from collections.abc import Sequence

from comparison.config import SETTLE_S, LoadPlan
from comparison.summary import NOT_RECOVERED, Summary

HEALTHY_LAG_MS = 70.0  # toobusy's default maxLag: above it the seed's server would start shedding


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} ms"


def _pct(share: float) -> str:
    percent = share * 100
    return f"{percent:.1f} %" if 0 < percent < 9.95 else f"{percent:.0f} %"


def _top_kind(kinds: str) -> str:
    """The most frequent kind from `a=3;b=1` (the summary sorts largest first)."""
    return kinds.split(";", 1)[0].split("=", 1)[0] if kinds else ""


def _lag(summary: Summary) -> float:
    return summary.server_max_lag_ms if summary.server_max_lag_ms is not None else 0.0


def _p95_lag(summary: Summary) -> float:
    return summary.server_p95_lag_ms if summary.server_p95_lag_ms is not None else _lag(summary)


def describe(summaries: Sequence[Summary], plan: LoadPlan) -> list[str]:
    """The sentences for summary.md and report.html."""
    if not summaries:
        return ["No client class finished, so there is nothing to compare."]
    sentences = [_setting(plan, len(summaries)), *_verdict(summaries), *_deferrals(summaries)]
    if plan.outage_s:
        return [*sentences, *_outage(summaries), _recovery(summaries)]
    worst = max(summaries, key=_lag)
    sentences.append(_worst(worst))
    if plan.capacity_change_s:
        return [*sentences, *_capacity(summaries, plan)]
    healthy = [s for s in summaries if s is not worst]
    if healthy:
        best = min(healthy, key=lambda s: (_p95_lag(s), -s.slo_goodput_rps))
        sentences.append(_best(best, worst, plan))
    return sentences


def ranked_by_slo_goodput(summaries: Sequence[Summary]) -> list[Summary]:
    """Most SLO goodput first; ties go to the client that threw less at the server."""
    return sorted(summaries, key=lambda s: (-s.slo_goodput_rps, s.wire_attempts))


def losses(s: Summary) -> list[tuple[str, int]]:
    """Where the launched calls that were not SLO goodput went, largest first."""
    parts = [("came late", s.late), ("failed", s.server_errors), ("were shed", s.shed),
             ("never finished", s.unfinished)]  # fmt: skip
    return sorted(((why, n) for why, n in parts if n > 0), key=lambda part: -part[1])


def _why_less(s: Summary) -> str:
    found = losses(s)
    if not found or not s.launched:
        return f"{s.client} launched nothing that counted"
    described = []
    for why, count in found[:2]:
        text = f"{_pct(count / s.launched)} {why}"
        if why == "failed" and s.server_error_kinds:
            text += f" (mostly {_top_kind(s.server_error_kinds)})"
        if why == "were shed" and s.shed_kinds:
            text += f" (mostly {_top_kind(s.shed_kinds)})"
        described.append(text)
    return f"{s.client} {s.slo_goodput_rps:,.1f}/s, as {' and '.join(described)}"


def _verdict(summaries: Sequence[Summary]) -> list[str]:
    ranked = ranked_by_slo_goodput(summaries)
    top = ranked[0]
    slo = f"{top.slo_ms:,.0f} ms" if top.slo_ms else "the SLO"
    attainment = top.slo_attainment
    attained = f", {_pct(attainment)} of the requests it meant to launch" if attainment else ""
    latency = f"; p99 {_ms(top.p99_ms)}" if top.p99_ms is not None else ""
    first = (
        f"The most SLO goodput came from {top.client}: {top.slo_goodput_rps:,.1f} requests/s answered 2xx "
        f"within {slo} of their scheduled launch{attained}{latency}."
    )
    if len(ranked) == 1:
        return [first]
    return [first, "The others served less within the SLO: " + "; ".join(map(_why_less, ranked[1:])) + "."]


def _deferrals(summaries: Sequence[Summary]) -> list[str]:
    """What each client that defers did with the calls it could not send at once."""
    sentences = []
    for s in summaries:
        if not s.deferred:
            continue
        text = (
            f"{s.client} kept {s.deferred:,} requests on disk instead of dropping them, replayed "
            f"{s.replayed or 0:,} of them and lost {s.lost:,}"
        )
        if s.expired:
            text += (
                f" ({s.expired:,} of them expired unsent: more was offered than the server could ever serve, "
                "the seed's ever-increasing backlog, which no queue can work off)"
            )
        if s.kept:
            text += f"; {s.kept:,} were still queued when the run ended (kept on disk for the next run)"
        sentences.append(text + ".")
    return sentences


def _setting(plan: LoadPlan, count: int) -> str:
    ratio = plan.offered_rps / plan.capacity_rps
    shape = (
        f"in bursts averaging {plan.offered_rps:,.0f} requests/s ({ratio:.2f} x)"
        if plan.burst
        else f"{plan.offered_rps:,.0f} requests/s ({ratio:.1f} x)"
    )
    extra = f", with a {plan.outage_s:g} s outage from {plan.outage_at_s:g} s" if plan.outage_s else ""
    if plan.capacity_change_s and plan.reduced_capacity_rps:
        extra = (
            f", with the server's sync_work_ms {'halved' if plan.scenario == 'capacity-up' else 'doubled'} "
            f"for {plan.capacity_change_s:g} s from "
            f"{plan.capacity_change_at_s:g} s (capacity {plan.reduced_capacity_rps:,.0f} requests/s then)"
        )
    return (
        f"Each of the {count} client classes was offered {shape} the measured capacity of "
        f"{plan.capacity_rps:,.0f} requests/s for {plan.duration_s:g} s{extra}."
    )


def _worst(s: Summary) -> str:
    lost = f"lost {_pct(s.failed_share)} of its requests on the wire"
    if s.server_errors:
        lost += f" (mostly {_top_kind(s.server_error_kinds)})"
    else:
        lost = "lost none of its requests on the wire"
    sockets = f" with {s.server_max_sockets} sockets open" if s.server_max_sockets is not None else ""
    return (
        f"{s.client} drove the server's lag to {_ms(s.server_max_lag_ms)}{sockets} and {lost}, "
        f"serving {s.slo_goodput_rps:,.0f} requests/s within the SLO."
    )


def _best(s: Summary, worst: Summary, plan: LoadPlan) -> str:
    if s.shed:
        how = f"by holding back {_pct(s.shed_share)} at the client (mostly {_top_kind(s.shed_kinds)})"
    elif s.server_errors:
        how = f"while {_pct(s.failed_share)} of its requests failed"
    else:
        how = "without shedding or failing anything"
    verdict = "under" if _lag(s) <= HEALTHY_LAG_MS else "at"
    latency = f" at a p99 of {_ms(s.p99_ms)}" if s.p99_ms is not None else ""
    return (
        f"{s.client} kept the lag {verdict} {_ms(_lag(s))} (p95 {_ms(s.server_p95_lag_ms)}) {how}, and "
        f"served {s.slo_goodput_rps:,.0f} requests/s within the SLO "
        f"({_pct(s.slo_goodput_rps / plan.capacity_rps)} of capacity, against "
        f"{worst.slo_goodput_rps:,.0f} for {worst.client}){latency}."
    )


def _outage(summaries: Sequence[Summary]) -> list[str]:
    """During an outage lag says little; what matters is how much each client threw at a failing server."""
    loudest = max(summaries, key=lambda s: (s.server_errors, s.wire_attempts))
    sentences = [
        f"{loudest.client} {_attempts(loudest)}, and {loudest.server_errors:,} failed"
        f"{f' (mostly {_top_kind(loudest.server_error_kinds)})' if loudest.server_errors else ''}."
    ]
    others = [s for s in summaries if s is not loudest]
    if others:
        quietest = min(others, key=lambda s: (s.server_errors, -s.goodput_rps))
        held = (
            f", holding back {quietest.shed:,} at the client (mostly {_top_kind(quietest.shed_kinds)})"
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


def _capacity(summaries: Sequence[Summary], plan: LoadPlan) -> list[str]:
    """Goodput in each phase against the capacity of that phase: does the client follow the change?"""
    reduced = [s for s in summaries if s.goodput_reduced_rps is not None]
    restored = [s for s in summaries if s.goodput_restored_rps is not None]
    if not reduced or not restored or not plan.reduced_capacity_rps:
        return ["Goodput per phase could not be measured: the client samples are missing."]
    return [
        _phase(
            "While the capacity was reduced to", plan.reduced_capacity_rps, reduced, "goodput_reduced_rps"
        ),
        _phase("After it was restored to", plan.capacity_rps, restored, "goodput_restored_rps"),
    ]


def _phase(opening: str, capacity: float, summaries: Sequence[Summary], column: str) -> str:
    ranked = sorted(summaries, key=lambda s: getattr(s, column), reverse=True)
    best, worst = ranked[0], ranked[-1]

    def served(s: Summary) -> str:
        rate = getattr(s, column)
        return f"{rate:,.0f} requests/s ({_pct(rate / capacity)} of it)"

    text = f"{opening} {capacity:,.0f} requests/s, {best.client} served {served(best)}"
    if worst is not best:
        text += f" and {worst.client} {served(worst)}"
    return text + f", from {SETTLE_S:g} s after the change to the end of the phase."
