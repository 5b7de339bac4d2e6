"""`wave`: the offered load swings as a sine between 0.5 x C and 2 x C, with a period of `--period-s`.
Real traffic comes and goes; does each mitigation follow it, shedding on the crest and letting the
trough through?

The swing is a rate schedule (`LoadPlan.schedule`): `CREST_USERS` users at the crest, each launching a
twentieth of the crest rate, so the load moves in steps of 0.1 x C, sampled every STEP_S. It starts in a
trough. `--rate-multiplier` or `--launch-rate` sets the crest; the trough stays TROUGH_X / CREST_X of it.

Each class's row gains `crest_slo_attainment` and `trough_slo_attainment`: the calls answered 2xx within
the SLO over the calls launched while the offered load was above C, and while it was at or below C
(PREFIX_mitigations.csv's `all` rows). An answer is counted when it arrives, so only those counted from
one SLO after a phase began to its end surely belong to it: the attainments are lower bounds, never
flattering, short by at most SLO / phase length. The time charts shade the crests.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from comparison.counters import value_at
from comparison.errors import ConfigError, check_range, num
from comparison.plan import LoadPlan
from comparison.readers import ClientRow, read_client
from comparison.scenarios.base import Number, RunSettings, Scenario
from comparison.summary import ClassResult, Summary
from comparison.words import lag, pct, worst

TROUGH_X = 0.5
CREST_X = 2.0
CREST_USERS = 20  # each user launches CREST_X / CREST_USERS x C, 0.1 x C by default
STEP_S = 0.25
PERIOD_S = 20.0
MIN_PERIOD_S = 2.0
MAX_PERIOD_S = 300.0


@dataclass(frozen=True)
class WaveOptions:
    """The wave's period; a bad one raises ConfigError naming --period-s."""

    period_s: float = PERIOD_S

    def __post_init__(self) -> None:
        check_range("--period-s", self.period_s, MIN_PERIOD_S, MAX_PERIOD_S, "seconds")


class Wave(Scenario):
    name = "wave"
    order = 96
    help = "a sine between 0.5 x C and 2 x C with a period of --period-s: does each client follow it?"
    multiplier = CREST_X
    plain = True
    option_dests = ("period_s",)
    columns = ("crest_slo_attainment", "trough_slo_attainment")

    def add_arguments(self, parser: argparse.ArgumentParser, number: Number) -> None:
        group = parser.add_argument_group(f"{self.name} scenario")
        group.add_argument(
            "--period-s",
            type=number("period_s"),
            help=f"{self.name}: seconds from one crest to the next, {MIN_PERIOD_S:g} to {MAX_PERIOD_S:g} "
            f"(default {PERIOD_S:g})",
        )

    def options(self, args: argparse.Namespace) -> WaveOptions:
        return WaveOptions() if args.period_s is None else WaveOptions(args.period_s)

    def check(self, config: RunSettings) -> None:
        period = _options(config).period_s
        if config.duration_s < period:
            raise ConfigError(
                "--duration",
                f"{num(config.duration_s)} s is too short for the {self.name} scenario: one period "
                f"(--period-s) takes {num(period)} s",
            )
        if config.mix:
            raise ConfigError("--mix", f"not with the {self.name} scenario, whose schedule sets the users")

    def shape(self, config: RunSettings, capacity_rps: float, reduced_rps: float | None) -> LoadPlan:
        crest = config.launch_rate or (config.rate_multiplier or self.multiplier) * capacity_rps
        schedule = swing(config.duration_s, _options(config).period_s)
        per_user = crest / CREST_USERS
        ends = [start for start, _ in schedule[1:]] + [config.duration_s]
        users = sum(n * (end - start) for (start, n), end in zip(schedule, ends, strict=True))
        mean = per_user * users / config.duration_s
        return LoadPlan(
            self.name, capacity_rps, config.duration_s, schedule[0][1], per_user, mean, schedule=schedule
        )

    def adjust(self, summary: Summary, result: ClassResult, plan: LoadPlan, config: RunSettings) -> Summary:
        crest, trough = attainments(read_client(result.files.mitigations, result.client), plan)
        return self.extra(summary, crest_slo_attainment=crest, trough_slo_attainment=trough)

    def shape_words(self, plan: LoadPlan, ratio: float) -> str:
        low = min(plan.offered_at(t * STEP_S) for t in range(int(plan.duration_s / STEP_S)))
        high = max(plan.offered_at(t * STEP_S) for t in range(int(plan.duration_s / STEP_S)))
        return (
            f"a load swinging as a sine between {low:,.0f} and {high:,.0f} requests/s "
            f"({low / plan.capacity_rps:.1f} x to {high / plan.capacity_rps:.1f} x, "
            f"{plan.offered_rps:,.0f} on average)"
        )

    def story(self, summaries: Sequence[Summary], plan: LoadPlan) -> list[str] | None:
        return [*follow_sentences(summaries), worst(max(summaries, key=lag))]

    def shade(self, axes: Any, plan: LoadPlan) -> None:
        for start, end in crests(plan):
            axes.axvspan(start, end, color="#fff3e0", alpha=0.8, lw=0, zorder=0)


def _options(config: RunSettings) -> WaveOptions:
    options = config.scenario_options
    return options if isinstance(options, WaveOptions) else WaveOptions()


def swing(duration_s: float, period_s: float) -> tuple[tuple[float, int], ...]:
    """The wave's steps (from t, users): a sine from the trough's users to CREST_USERS, starting in a
    trough, sampled every STEP_S; a step only where the users change."""
    trough = max(1, round(CREST_USERS * TROUGH_X / CREST_X))
    steps: list[tuple[float, int]] = []
    for i in range(int(duration_s / STEP_S) + 1):
        t = i * STEP_S
        users = round(trough + (CREST_USERS - trough) * (1 - math.cos(2 * math.pi * t / period_s)) / 2)
        if not steps or steps[-1][1] != users:
            steps.append((round(t, 3), users))
    return tuple(steps)


def crests(plan: LoadPlan) -> list[tuple[float, float]]:
    """The (start, end) seconds in which the offered load was above C."""
    spans: list[tuple[float, float]] = []
    start = None
    for i in range(int(plan.duration_s / STEP_S) + 1):
        t = min(i * STEP_S, plan.duration_s)
        above = plan.offered_at(t) > plan.capacity_rps and t < plan.duration_s
        if above and start is None:
            start = t
        elif not above and start is not None:
            spans.append((start, t))
            start = None
    return spans


def attainments(rows: Sequence[ClientRow], plan: LoadPlan) -> tuple[float | None, float | None]:
    """SLO attainment while the offered load was above C, and while it was at or below C: a lower bound
    that cannot flatter. The ledger counts an SLO-good answer when it arrives, up to `plan.slo_ms` after
    its launch, so only the answers counted from one SLO after a phase began to its end are certain to
    belong to calls launched in it; those, over every call launched in the phase."""
    if len(rows) < 2:
        return None, None
    launched = [(row.elapsed_s, float(row.launched_total)) for row in rows]
    good = [(row.elapsed_s, float(row.slo_ok_total or 0)) for row in rows]
    slo_s = plan.slo_ms / 1000
    sent = {True: 0.0, False: 0.0}
    kept = {True: 0.0, False: 0.0}
    for above, (start, end) in phases(plan):
        first, last = value_at(launched, start), value_at(launched, end)
        certain_from = value_at(good, min(start + slo_s, end))
        certain_to = value_at(good, end)
        if None in (first, last, certain_from, certain_to):
            continue  # the phase was not watched (the run stopped short)
        sent[above] += last - first  # type: ignore[operator]
        kept[above] += certain_to - certain_from  # type: ignore[operator]
    return tuple(kept[side] / sent[side] if sent[side] > 0 else None for side in (True, False))  # type: ignore[return-value]


def phases(plan: LoadPlan) -> list[tuple[bool, tuple[float, float]]]:
    """The run cut into crests (True) and troughs (False), in order."""
    found: list[tuple[bool, tuple[float, float]]] = []
    at = 0.0
    for start, end in crests(plan):
        if start > at:
            found.append((False, (at, start)))
        found.append((True, (start, end)))
        at = end
    if at < plan.duration_s:
        found.append((False, (at, plan.duration_s)))
    return found


def follow_sentences(summaries: Sequence[Summary]) -> list[str]:
    """Who kept the most within the SLO on the crests, and what each kept on crests and in troughs."""

    def share(s: Summary, column: str) -> float:
        value = s.value(column)
        return float(value) if isinstance(value, int | float) else -1.0

    def kept(s: Summary) -> str:
        crest, trough = share(s, "crest_slo_attainment"), share(s, "trough_slo_attainment")
        said = "n/a" if crest < 0 else pct(crest)
        return f"{s.client} {said} on the crests and {'n/a' if trough < 0 else pct(trough)} in the troughs"

    ranked = sorted(summaries, key=lambda s: share(s, "crest_slo_attainment"), reverse=True)
    first = f"Riding the wave, {kept(ranked[0])} within the SLO, the most on the crests (load above C)."
    if len(ranked) == 1:
        return [f"Riding the wave, {kept(ranked[0])} within the SLO (crests: load above C)."]
    return [first, "The others: " + "; ".join(kept(s) for s in ranked[1:]) + "."]


SCENARIO = Wave()
