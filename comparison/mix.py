"""Mixed fleets: several client classes in one run against one target (`--mix 'A:1,B:3'`).

Every class keeps its own pipeline and ledger, so its final `worker=all` row in the shared
PREFIX_mitigations.csv is its own; Locust's PREFIX_stats.csv is not (its rows are by method and name,
shared by every class), so a mix's summary leaves `amplification` empty and shows attempts per call from
the ledger's `wire_total` instead. A class's offered load is its share of the users, each launching the
same rate. For each group this reports its share of the SLO goodput, of the shed calls and of the server
errors next to its share of the load: does the polite client get punished for being polite?
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from comparison.plan import LoadPlan
from comparison.readers import read_client
from comparison.summary import ClassResult, Summary


def _share(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _pct(share: float | None) -> str:
    return "n/a" if share is None else f"{share:.0%}"


@dataclass(frozen=True)
class Group:
    client: str
    users: int  # per client instance
    load_share: float
    offered_rps: float
    launched: int
    slo_goodput_rps: float
    goodput_share: float | None
    server_errors: int
    errors_share: float | None
    shed: int
    shed_share: float | None
    attempts_per_call: float | None
    p99_ms: float | None

    @property
    def return_on_share(self) -> float | None:
        """Its share of the SLO goodput over its share of the load: 1 is fair, below 1 it got less."""
        if self.goodput_share is None or not self.load_share:
            return None
        return self.goodput_share / self.load_share


def adjust(summary: Summary, plan: LoadPlan) -> Summary:
    """A mix member's summary row: its own offered rate, and no amplification (stats are shared)."""
    if not plan.mix:
        return summary
    offered = plan.offered_rps * plan.offered_share(summary.client)
    return replace(summary, offered_rps=offered, amplification=None)


def groups_of(results: Sequence[ClassResult], summaries: Sequence[Summary], plan: LoadPlan) -> list[Group]:
    wire = {}
    for result in results:
        rows = read_client(result.files.mitigations, result.client)
        last = max(rows, key=lambda r: r.timestamp, default=None)
        wire[result.client] = last.wire_total if last else 0
    goodput = sum(s.slo_goodput_rps for s in summaries)
    errors = sum(s.server_errors for s in summaries)
    shed = sum(s.shed for s in summaries)
    users = dict(plan.mix)
    return [
        Group(
            client=s.client,
            users=users.get(s.client, 0),
            load_share=plan.offered_share(s.client),
            offered_rps=s.offered_rps,
            launched=s.launched,
            slo_goodput_rps=s.slo_goodput_rps,
            goodput_share=_share(s.slo_goodput_rps, goodput),
            server_errors=s.server_errors,
            errors_share=_share(s.server_errors, errors),
            shed=s.shed,
            shed_share=_share(s.shed, shed),
            attempts_per_call=_share(wire[s.client], s.launched - s.shed) if s.launched > s.shed else None,
            p99_ms=s.p99_ms,
        )
        for s in summaries
    ]


def sentences(groups: Sequence[Group], plan: LoadPlan) -> list[str]:
    names = " and ".join(f"{g.client} ({g.users} of {sum(x.users for x in groups)} users)" for g in groups)
    said = [
        f"In one run, {names} shared a server whose capacity was {plan.capacity_rps:,.0f} requests/s, "
        f"offered {plan.offered_rps:,.0f} requests/s in total "
        f"({plan.offered_rps / plan.capacity_rps:.1f} x) for {plan.duration_s:g} s."
    ]
    for g in groups:
        said.append(
            f"{g.client} launched {_pct(g.load_share)} of the load and got {_pct(g.goodput_share)} of the "
            f"SLO goodput ({g.slo_goodput_rps:,.1f}/s); it took {_pct(g.errors_share)} of the server "
            f"errors and {_pct(g.shed_share)} of the shed calls."
        )
    ranked = [g for g in groups if g.return_on_share is not None]
    if len(ranked) >= 2:
        worst = min(ranked, key=lambda g: g.return_on_share or 0.0)
        best = max(ranked, key=lambda g: g.return_on_share or 0.0)
        said.append(
            f"Per share of the load, {best.client} came out best ({best.return_on_share:.2f} x a fair share "
            f"of the SLO goodput) and {worst.client} worst ({worst.return_on_share:.2f} x)."
        )
    return said


def markdown(groups: Sequence[Group], said: Sequence[str]) -> str:
    lines = [
        "## Mix: the groups side by side",
        "",
        "| group | users | share of load | offered/s | launched | SLO goodput/s | share of SLO goodput | "
        "server errors | share of errors | shed | share of shed | attempts per call | p99 ms |",
        "|" + " --- |" * 13,
    ]
    for g in groups:
        attempts = "" if g.attempts_per_call is None else f"{g.attempts_per_call:.2f}"
        p99 = "" if g.p99_ms is None else f"{g.p99_ms:.0f}"
        lines.append(
            f"| {g.client} | {g.users} | {_pct(g.load_share)} | {g.offered_rps:.1f} | {g.launched} | "
            f"{g.slo_goodput_rps:.1f} | {_pct(g.goodput_share)} | {g.server_errors} | "
            f"{_pct(g.errors_share)} | "
            f"{g.shed} | {_pct(g.shed_share)} | {attempts} | {p99} |"
        )
    return "\n".join([*lines, "", " ".join(said), ""])


def html_section(groups: Sequence[Group], said: Sequence[str]) -> str:
    head = ("group", "users", "share of load", "SLO goodput/s", "share of SLO goodput", "server errors",
            "share of errors", "shed", "share of shed", "attempts per call")  # fmt: skip
    rows = []
    for g in groups:
        attempts = "" if g.attempts_per_call is None else f"{g.attempts_per_call:.2f}"
        cells = (g.client, g.users, _pct(g.load_share), f"{g.slo_goodput_rps:.1f}", _pct(g.goodput_share),
                 g.server_errors, _pct(g.errors_share), g.shed, _pct(g.shed_share), attempts)  # fmt: skip
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    table = (
        '<table id="mix"><thead><tr>' + "".join(f"<th>{html.escape(h)}</th>" for h in head)
        + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )  # fmt: skip
    return (
        "<h2>Mix: the groups side by side</h2>\n"
        f'<p id="mix-narrative">{html.escape(" ".join(said))}</p>\n<div class="wide">{table}</div>'
    )


def describe(results: Sequence[ClassResult], summaries: Sequence[Summary], plan: LoadPlan) -> list[str]:
    """The sentences of a mix run, in place of the one-class-after-another narrative."""
    return sentences(groups_of(results, summaries, plan), plan)


def write_outputs(
    run_dir: Path, plan: LoadPlan, results: Sequence[ClassResult], summaries: Sequence[Summary]
) -> tuple[list[str], str]:
    """The mix section appended to summary.md; returns the terminal lines and the report.html section."""
    if not plan.mix:
        return [], ""
    groups = groups_of(results, summaries, plan)
    said = sentences(groups, plan)
    with (run_dir / "summary.md").open("a", encoding="utf-8") as handle:
        handle.write("\n" + markdown(groups, said))
    return [f"mix: {line}" for line in said[1:]], html_section(groups, said)
