"""The shared words of the narrative: numbers as text, and the sentences every scenario can use
(the verdict, where each client's calls went, the worst lag and the healthiest server).

A scenario's own sentences (comparison/scenarios/) are built from these; `comparison.narrative` puts
them in order.
"""

from __future__ import annotations

from collections.abc import Sequence

from comparison.plan import LoadPlan
from comparison.summary import Summary

HEALTHY_LAG_MS = 70.0  # toobusy's default maxLag: above it the seed's server would start shedding


def ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} ms"


def pct(share: float) -> str:
    percent = share * 100
    return f"{percent:.1f} %" if 0 < percent < 9.95 else f"{percent:.0f} %"


def top_kind(kinds: str) -> str:
    """The most frequent kind from `a=3;b=1` (the summary sorts largest first)."""
    return kinds.split(";", 1)[0].split("=", 1)[0] if kinds else ""


def lag(summary: Summary) -> float:
    return summary.server_max_lag_ms if summary.server_max_lag_ms is not None else 0.0


def p95_lag(summary: Summary) -> float:
    return summary.server_p95_lag_ms if summary.server_p95_lag_ms is not None else lag(summary)


def ranked_by_slo_goodput(summaries: Sequence[Summary]) -> list[Summary]:
    """Most SLO goodput first; ties go to the client that threw less at the server."""
    return sorted(summaries, key=lambda s: (-s.slo_goodput_rps, s.wire_attempts))


def losses(s: Summary) -> list[tuple[str, int]]:
    """Where the launched calls that were not SLO goodput went, largest first."""
    parts = [("came late", s.late), ("failed", s.server_errors), ("were shed", s.shed),
             ("never finished", s.unfinished)]  # fmt: skip
    return sorted(((why, n) for why, n in parts if n > 0), key=lambda part: -part[1])


def why_less(s: Summary) -> str:
    found = losses(s)
    if not found or not s.launched:
        return f"{s.client} launched nothing that counted"
    described = []
    for why, count in found[:2]:
        text = f"{pct(count / s.launched)} {why}"
        if why == "failed" and s.server_error_kinds:
            text += f" (mostly {top_kind(s.server_error_kinds)})"
        if why == "were shed" and s.shed_kinds:
            text += f" (mostly {top_kind(s.shed_kinds)})"
        described.append(text)
    return f"{s.client} {s.slo_goodput_rps:,.1f}/s, as {' and '.join(described)}"


def verdict(summaries: Sequence[Summary]) -> list[str]:
    ranked = ranked_by_slo_goodput(summaries)
    top = ranked[0]
    slo = f"{top.slo_ms:,.0f} ms" if top.slo_ms else "the SLO"
    attainment = top.slo_attainment
    attained = f", {pct(attainment)} of the requests it meant to launch" if attainment else ""
    latency = f"; p99 {ms(top.p99_ms)}" if top.p99_ms is not None else ""
    first = (
        f"The most SLO goodput came from {top.client}: {top.slo_goodput_rps:,.1f} requests/s answered 2xx "
        f"within {slo} of their scheduled launch{attained}{latency}."
    )
    if len(ranked) == 1:
        return [first]
    return [first, "The others served less within the SLO: " + "; ".join(map(why_less, ranked[1:])) + "."]


def deferrals(summaries: Sequence[Summary]) -> list[str]:
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


def worst(s: Summary) -> str:
    lost = f"lost {pct(s.failed_share)} of its requests on the wire"
    if s.server_errors:
        lost += f" (mostly {top_kind(s.server_error_kinds)})"
    else:
        lost = "lost none of its requests on the wire"
    sockets = f" with {s.server_max_sockets} sockets open" if s.server_max_sockets is not None else ""
    return (
        f"{s.client} drove the server's lag to {ms(s.server_max_lag_ms)}{sockets} and {lost}, "
        f"serving {s.slo_goodput_rps:,.0f} requests/s within the SLO."
    )


def best(s: Summary, worst: Summary, plan: LoadPlan) -> str:
    if s.shed:
        how = f"by holding back {pct(s.shed_share)} at the client (mostly {top_kind(s.shed_kinds)})"
    elif s.server_errors:
        how = f"while {pct(s.failed_share)} of its requests failed"
    else:
        how = "without shedding or failing anything"
    verdict = "under" if lag(s) <= HEALTHY_LAG_MS else "at"
    latency = f" at a p99 of {ms(s.p99_ms)}" if s.p99_ms is not None else ""
    return (
        f"{s.client} kept the lag {verdict} {ms(lag(s))} (p95 {ms(s.server_p95_lag_ms)}) {how}, and "
        f"served {s.slo_goodput_rps:,.0f} requests/s within the SLO "
        f"({pct(s.slo_goodput_rps / plan.capacity_rps)} of capacity, against "
        f"{worst.slo_goodput_rps:,.0f} for {worst.client}){latency}."
    )
