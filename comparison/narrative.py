"""A few sentences that say what the table shows, written from the numbers of this run.

The verdict comes first: the client that served the most within the SLO, then why each of the others
served less (late, failed, shed or unfinished, whichever cost it most). Then the scenario's own story
(comparison/scenarios/: an outage tells of failures and recovery, a capacity change of each phase), or
by default the server's side: the client with the worst lag and the one that kept the server
healthiest. Each sentence picks its subject from the data, so a different run reads differently.
"""

from __future__ import annotations

from collections.abc import Sequence

from comparison.plan import LoadPlan
from comparison.scenarios import scenario_of
from comparison.summary import Summary
from comparison.words import best, deferrals, lag, p95_lag, verdict, worst


def describe(summaries: Sequence[Summary], plan: LoadPlan) -> list[str]:
    """The sentences for summary.md and report.html."""
    if not summaries:
        return ["No client class finished, so there is nothing to compare."]
    sentences = [_setting(plan, len(summaries)), *verdict(summaries), *deferrals(summaries)]
    story = scenario_of(plan.scenario).story(summaries, plan)
    if story is not None:
        return [*sentences, *story]
    return [*sentences, *shared_story(summaries, plan)]


def shared_story(summaries: Sequence[Summary], plan: LoadPlan) -> list[str]:
    """The client that drove the lag highest, then the one that kept the server healthiest."""
    worst_one = max(summaries, key=lag)
    sentences = [worst(worst_one)]
    healthy = [s for s in summaries if s is not worst_one]
    if healthy:
        best_one = min(healthy, key=lambda s: (p95_lag(s), -s.slo_goodput_rps))
        sentences.append(best(best_one, worst_one, plan))
    return sentences


def _setting(plan: LoadPlan, count: int) -> str:
    scenario = scenario_of(plan.scenario)
    shape = scenario.shape_words(plan, plan.offered_rps / plan.capacity_rps)
    return (
        f"Each of the {count} client classes was offered {shape} the measured capacity of "
        f"{plan.capacity_rps:,.0f} requests/s for {plan.duration_s:g} s{scenario.event_words(plan)}."
    )
