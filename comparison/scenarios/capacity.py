"""`capacity`: 1.1 x C while the server's sync_work_ms doubles for 20 s mid-run, then reverts.

The runner probes C twice (the second time with sync_work_ms times `work_factor`, set through
/admin/config for the probe's length only) and changes the server through POST /admin/config with
duration_s, so the server restores itself. Goodput is judged per phase after SETTLE_S, so each side
needs SETTLE_S plus a few seconds that are measured. It fills goodput_reduced_rps and
goodput_restored_rps: the client's goodput (PREFIX_mitigations.csv) while the capacity was changed,
and after it reverted, each from SETTLE_S after the change to the end of its phase.
`capacity-up` (comparison/scenarios/capacity_up.py) is the same with the work halved.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from comparison.counters import rate_between
from comparison.errors import ConfigError, num
from comparison.plan import LoadPlan
from comparison.readers import ClientRow, read_client
from comparison.scenarios.base import RunSettings, Scenario, Window
from comparison.summary import SETTLE_S, ClassResult, Summary
from comparison.target import change_capacity, sync_work_ms
from comparison.words import lag as by_lag
from comparison.words import pct, worst

CHANGE_S = 20.0
WORK_FACTOR = 2.0
MARGIN_S = 6.0
MIN_DURATION_S = CHANGE_S + 2 * MARGIN_S


class CapacityChange(Scenario):
    name = "capacity"
    order = 50
    help = "1.1 x C while the server's sync_work_ms doubles for 20 s mid-run, then reverts"
    multiplier = 1.1
    duration_s = 50.0
    fault = "halves the capacity through /admin/config"
    work_factor = WORK_FACTOR
    verb = "doubled"  # what happens to sync_work_ms, in the setting sentence

    def check(self, config: RunSettings) -> None:
        if config.duration_s < MIN_DURATION_S:
            raise ConfigError(
                "--duration",
                f"{num(config.duration_s)} s is too short for the {self.name} scenario: it needs at least "
                f"{num(MIN_DURATION_S)} s ({num(MARGIN_S)} s before, the "
                f"{num(CHANGE_S)} s change, {num(MARGIN_S)} s after)",
            )

    def shape(self, config: RunSettings, capacity_rps: float, reduced_rps: float | None) -> LoadPlan:
        if reduced_rps is None:
            raise ValueError(f"the {self.name} scenario needs the reduced capacity")
        plan = super().shape(config, capacity_rps, reduced_rps)
        return replace(
            plan,
            capacity_change_at_s=round((config.duration_s - CHANGE_S) / 2, 1),
            capacity_change_s=CHANGE_S,
            reduced_capacity_rps=reduced_rps,
        )

    def event(
        self, url: str, plan: LoadPlan, config: RunSettings, entry: dict[str, Any]
    ) -> Callable[[], Window] | None:
        factor = self.work_factor or 1.0

        def capacity_change() -> Window:
            work = sync_work_ms(url, config.allow_remote)
            window = change_capacity(url, work * factor, plan.capacity_change_s or 0, config.allow_remote)
            entry["capacity_change"] = {"window": list(window), "sync_work_ms": [work, work * factor]}
            return window

        return capacity_change

    def result(self, client: str, files: Any, window: Window | None) -> ClassResult:
        return ClassResult(client, files, capacity_change=window)

    def adjust(self, summary: Summary, result: ClassResult, plan: LoadPlan, config: RunSettings) -> Summary:
        return with_phase_goodput(summary, result)

    def event_words(self, plan: LoadPlan) -> str:
        if not (plan.capacity_change_s and plan.reduced_capacity_rps):
            return ""
        return (
            f", with the server's sync_work_ms {self.verb} for {plan.capacity_change_s:g} s from "
            f"{plan.capacity_change_at_s:g} s (capacity {plan.reduced_capacity_rps:,.0f} requests/s then)"
        )

    def story(self, summaries: Sequence[Summary], plan: LoadPlan) -> list[str] | None:
        return phase_story(summaries, plan)


def with_phase_goodput(summary: Summary, result: ClassResult) -> Summary:
    """The row with goodput_reduced_rps and goodput_restored_rps, when the class had a change."""
    if result.capacity_change is None:
        return summary
    reduced, restored = phase_goodput(
        read_client(result.files.mitigations, result.client), result.capacity_change
    )
    return replace(
        summary,
        goodput_reduced_rps=None if reduced is None else max(0.0, reduced),
        goodput_restored_rps=None if restored is None else max(0.0, restored),
    )


def phase_goodput(
    client: Sequence[ClientRow], change: Window, settle_s: float = SETTLE_S
) -> tuple[float | None, float | None]:
    """Goodput while the capacity was changed and after it reverted, each from `settle_s` after the
    change to the end of its phase (the run's last sample for the second)."""
    points = [(row.timestamp, row.good_total) for row in client]
    last = max((t for t, _ in points), default=change[1])
    return (
        rate_between(points, change[0] + settle_s, change[1]),
        rate_between(points, change[1] + settle_s, last),
    )


def phase_story(summaries: Sequence[Summary], plan: LoadPlan) -> list[str] | None:
    """The worst lag, then goodput in each phase against that phase's capacity: does the client follow
    the change? None (the shared story) for a run without a change."""
    if not plan.capacity_change_s:
        return None
    sentences = [worst(max(summaries, key=by_lag))]
    reduced = [s for s in summaries if s.goodput_reduced_rps is not None]
    restored = [s for s in summaries if s.goodput_restored_rps is not None]
    if not reduced or not restored or not plan.reduced_capacity_rps:
        return [*sentences, "Goodput per phase could not be measured: the client samples are missing."]
    return [
        *sentences,
        _phase(
            "While the capacity was reduced to", plan.reduced_capacity_rps, reduced, "goodput_reduced_rps"
        ),
        _phase("After it was restored to", plan.capacity_rps, restored, "goodput_restored_rps"),
    ]


def _phase(opening: str, capacity: float, summaries: Sequence[Summary], column: str) -> str:
    ranked = sorted(summaries, key=lambda s: getattr(s, column), reverse=True)
    best, worst_one = ranked[0], ranked[-1]

    def served(s: Summary) -> str:
        rate = getattr(s, column)
        return f"{rate:,.0f} requests/s ({pct(rate / capacity)} of it)"

    text = f"{opening} {capacity:,.0f} requests/s, {best.client} served {served(best)}"
    if worst_one is not best:
        text += f" and {worst_one.client} {served(worst_one)}"
    return text + f", from {SETTLE_S:g} s after the change to the end of the phase."


SCENARIO = CapacityChange()
