"""`ramp`: the offered load climbs linearly from 0.2 x C to 3 x C over the run. Where does each client's
SLO attainment give way?

The climb is a rate schedule (`LoadPlan.schedule`): `USERS` users at the top, each launching a thirtieth
of the top rate, so the load rises in steps of 0.1 x C, each step as long as the run's share of it.
`--rate-multiplier` or `--launch-rate` sets the top; the bottom stays START_X / END_X of it.

Each class's row gains its knee from the client's side: `knee_offered_rps`, the offered load at which its
SLO attainment first fell below KNEE_ATTAINMENT, and `knee_x`, the same as a multiple of C. Attainment is
judged over windows of WINDOW_S seconds (from WARMUP_S, stepping STEP_S; longer at the foot of the ramp,
until one holds MIN_CALLS launches, so that one late call is not a percent): the calls answered 2xx within
the SLO in the window over the calls launched in it, both from PREFIX_mitigations.csv's `all` rows; the
offered load of a window is the plan's mean over it. Both cells are empty when attainment never fell
below 99 %: the knee lies past the top of the ramp. report.html plots SLO goodput against offered load.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from comparison.counters import value_at
from comparison.errors import ConfigError
from comparison.plan import LoadPlan
from comparison.readers import ClientRow, read_client
from comparison.scenarios.base import RunSettings, Scenario
from comparison.summary import ClassResult, Summary
from comparison.words import lag, pct, worst

START_X = 0.2
END_X = 3.0
USERS = 30  # at the top: each user launches END_X / USERS x C, 0.1 x C by default
KNEE_ATTAINMENT = 0.99
WINDOW_S = 2.0
STEP_S = 0.5
WARMUP_S = 1.0  # the first second (connections opening) is not judged
MIN_CALLS = 200  # a window widens until it holds this many launches, so one late call is not 1 %


class Ramp(Scenario):
    name = "ramp"
    order = 95  # after the scenarios before it, so their help and error lines keep their order
    help = "offered load climbing linearly from 0.2 x C to 3 x C over the run: each class's knee"
    multiplier = END_X
    plain = True
    columns = ("knee_offered_rps", "knee_x")

    def check(self, config: RunSettings) -> None:
        if config.mix:
            raise ConfigError("--mix", f"not with the {self.name} scenario, whose schedule sets the users")

    def shape(self, config: RunSettings, capacity_rps: float, reduced_rps: float | None) -> LoadPlan:
        top = config.launch_rate or (config.rate_multiplier or self.multiplier) * capacity_rps
        schedule = climb(config.duration_s)
        per_user = top / USERS
        mean = per_user * sum(
            users * (end - start) for start, end, users in spans(schedule, config.duration_s)
        )
        return LoadPlan(
            self.name, capacity_rps, config.duration_s, schedule[0][1], per_user, mean / config.duration_s,
            schedule=schedule,
        )  # fmt: skip

    def adjust(self, summary: Summary, result: ClassResult, plan: LoadPlan, config: RunSettings) -> Summary:
        found = knee(read_client(result.files.mitigations, result.client), plan)
        return self.extra(
            summary,
            knee_offered_rps=found,
            knee_x=None if found is None else found / plan.capacity_rps,
        )

    def shape_words(self, plan: LoadPlan, ratio: float) -> str:
        low, high = plan.offered_at(0), plan.offered_at(plan.duration_s)
        return (
            f"a load climbing linearly from {low:,.0f} to {high:,.0f} requests/s "
            f"({low / plan.capacity_rps:.1f} x to {high / plan.capacity_rps:.1f} x)"
        )

    def story(self, summaries: Sequence[Summary], plan: LoadPlan) -> list[str] | None:
        return [*knee_sentences(summaries, plan), worst(max(summaries, key=lag))]

    def section(
        self,
        plan: LoadPlan,
        results: Sequence[ClassResult],
        summaries: Sequence[Summary],
        config: RunSettings,
    ) -> str:
        return (
            "<h2>SLO goodput against offered load</h2>"
            f"<p>Each class's SLO goodput (2xx within {plan.slo_ms:g} ms, per second over "
            f"{STEP_S:g} s steps) against the load offered at that moment. Dashed: everything offered "
            "served; dotted: the capacity C; a cross marks each class's knee, where its SLO attainment first "
            f"fell below {KNEE_ATTAINMENT:.0%}.</p>"
            f'<div class="chart" id="ramp-goodput">{goodput_svg(plan, results, summaries)}</div>'
        )


def climb(duration_s: float) -> tuple[tuple[float, int], ...]:
    """The ramp's steps (from t, users): users(t) = round(low + (USERS - low) x t / duration), from
    START_X / END_X of USERS at 0 to USERS at the end."""
    low = max(1, round(USERS * START_X / END_X))
    steps = [(0.0, low)]
    for users in range(low + 1, USERS + 1):
        steps.append((round((users - 0.5 - low) / (USERS - low) * duration_s, 3), users))
    return tuple(steps)


def spans(schedule: Sequence[tuple[float, int]], duration_s: float) -> list[tuple[float, float, int]]:
    """(start, end, users) of every step inside the run."""
    ends = [start for start, _ in schedule[1:]] + [duration_s]
    return [(start, min(end, duration_s), users) for (start, users), end in zip(schedule, ends, strict=True)]


@dataclass(frozen=True)
class Window:
    start_s: float
    offered_rps: float
    attainment: float | None  # None when nothing was launched in it


def windows(rows: Sequence[ClientRow], plan: LoadPlan) -> list[Window]:
    """SLO attainment over windows of the run from WARMUP_S, stepping STEP_S: each WINDOW_S long, or
    longer where it takes that to hold MIN_CALLS launches (at the foot of the ramp)."""
    launched = [(row.elapsed_s, float(row.launched_total)) for row in rows]
    slo_ok = [(row.elapsed_s, float(row.slo_ok_total)) for row in rows]
    found = []
    t = WARMUP_S
    while t + WINDOW_S <= plan.duration_s + 1e-9:
        end = t + WINDOW_S
        sent = _grew(launched, t, end)
        while sent is not None and sent < MIN_CALLS and end + STEP_S <= plan.duration_s + 1e-9:
            end += STEP_S
            sent = _grew(launched, t, end)
        good = _grew(slo_ok, t, end)
        offered = sum(plan.offered_at(t + (end - t) * i / 8) for i in range(8)) / 8
        if sent is not None and good is not None:
            found.append(Window(t, offered, good / sent if sent > 0 else None))
        t = round(t + STEP_S, 9)
    return found


def _grew(points: Sequence[tuple[float, float]], start: float, end: float) -> float | None:
    first, last = value_at(points, start), value_at(points, end)
    return None if first is None or last is None else last - first


def knee(rows: Sequence[ClientRow], plan: LoadPlan) -> float | None:
    """The offered load of the first window whose SLO attainment fell below KNEE_ATTAINMENT; None when
    none did (or nothing was sampled)."""
    for window in windows(rows, plan):
        if window.attainment is not None and window.attainment < KNEE_ATTAINMENT:
            return window.offered_rps
    return None


def knee_sentences(summaries: Sequence[Summary], plan: LoadPlan) -> list[str]:
    """Which client held the SLO furthest up the ramp, and where each of the others gave way."""

    def reach(s: Summary) -> float:
        value = s.value("knee_offered_rps")
        return float(value) if isinstance(value, int | float) else float("inf")

    ranked = sorted(summaries, key=reach, reverse=True)
    capacity = plan.capacity_rps

    def where(s: Summary) -> str:
        if reach(s) == float("inf"):
            return f"{s.client} never fell below {pct(KNEE_ATTAINMENT)} up to the top of the ramp"
        at = reach(s)
        return (
            f"{s.client} fell below {pct(KNEE_ATTAINMENT)} at {at:,.0f} requests/s ({at / capacity:.2f} x C)"
        )

    top = ranked[0]
    first = f"Climbing the ramp, {where(top)}, the furthest of the {len(ranked)} classes."
    if len(ranked) == 1:
        first = f"Climbing the ramp, {where(top)}."
    if len(ranked) < 2:
        return [first]
    return [first, "The others: " + "; ".join(where(s) for s in ranked[1:]) + "."]


def goodput_svg(plan: LoadPlan, results: Sequence[ClassResult], summaries: Sequence[Summary]) -> str:
    from comparison.charts import COLOURS, plt, series_for, svg  # matplotlib only when drawing

    figure, axes = plt.subplots(figsize=(11, 5))
    top = plan.offered_at(plan.duration_s)
    axes.plot([0, top], [0, top], color=COLOURS["offered"], lw=1, ls="--", label="all offered, served")
    axes.axhline(plan.capacity_rps, color="#616161", lw=1, ls=":", label=f"C = {plan.capacity_rps:,.0f}/s")
    for result, summary in zip(results, summaries, strict=True):
        series = series_for(result)
        picked = [(plan.offered_at(t), rate) for t, rate in zip(series.t, series.slo_goodput, strict=True)]
        (line,) = axes.plot([x for x, _ in picked], [y for _, y in picked], lw=1.3, label=series.client)
        found: Any = summary.value("knee_offered_rps")
        if isinstance(found, int | float):
            axes.plot([found], [found * KNEE_ATTAINMENT], marker="x", ms=10, mew=2, color=line.get_color())
    axes.set_xlabel("offered load (requests/s)")
    axes.set_ylabel("SLO goodput (2xx within SLO /s)")
    axes.set_title("SLO goodput against offered load, up the ramp")
    axes.set_xlim(0, top * 1.02)
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    return svg(figure, "ramp")


SCENARIO = Ramp()
