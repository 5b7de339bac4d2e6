"""The metastable scenario: a short trigger, then a state that outlives it (or not), per client.

Bronson et al. (HotOS'21) and Huang et al. (OSDI'22): a trigger pushes a system past its capacity and a
sustaining effect, most often retries, keeps it there after the trigger is gone. Here:

  - steady load near capacity (0.9 x C by default) for `pre_s` seconds;
  - a trigger of `trigger_s` seconds: `capacity` doubles the target's sync_work_ms through /admin/config
    (C falls to about C/2), `slow` adds a 1 s non-blocking delay to every request (a slow fault);
  - `after_s` more seconds (30 by default) in which the client either comes back or does not.

The embedded target runs as the seed's server, which checks nothing (`--no-skip-abandoned`), so it works
for clients that have given up; `--skip-abandoned` or `--drop-expired` turn on the target's two answers.
Its queue holds `QUEUE_S` seconds of work at C (`--max-sockets` = QUEUE_S x C, a short `--backlog`): a
queue holding more than the SLO's worth of work drains at only C - offered, so at 0.9 x C even a client
that never retries needs (queue - SLO) / 0.1 seconds to come back, which is the vulnerable state, not
the metastable one (docs/metastable.md measures it with the seed's 256 + 128).

Per client, from the SLO goodput the ledger counts (PREFIX_mitigations.csv's slo_ok_total):
pre_trigger_slo_goodput_rps (from WARMUP_S to the trigger), post_trigger_slo_goodput_rps (the last
LAST_S seconds), recovery_s, recovered, peak_share (the best RATE_WINDOW_S window in the STUCK_AFTER_S
after the trigger, over pre: shown, never judged) and a verdict. The rules, each one named function:

  - back (`sustained_recovery`): every 1 s window for at least SUSTAIN_S at >= RECOVERY_SHARE x pre, not
    undone by a later SUSTAIN_S below it, and the last LAST_S still at that level. recovery_s is the
    trigger's end to the start of that stretch ("never" when there is none); recovered = it exists.
  - stuck (`is_stuck`): not back, after an after-phase of at least STUCK_AFTER_S, with the last LAST_S
    under STUCK_SHARE x pre. A shorter after-phase cannot tell stuck from slow.
  - the verdict (`verdict_for`): quick (back within quick_s), slow (back later), stuck, or not-back
    (neither: a shorter wait, or a level between the two shares), shown with the time it waited.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from comparison.counters import rate_between
from comparison.readers import ClientRow, read_client

if TYPE_CHECKING:
    from comparison.summary import ClassResult, Summary

PRE_S = 10.0
TRIGGER_S = 10.0
AFTER_S = 30.0
SUSTAIN_S = 5.0  # back means every 1 s window at the bar for this long
MIN_AFTER_S = SUSTAIN_S + 1.0  # room for one sustained stretch, the last sample falling a little short
MAX_PHASE_S = 300.0
WARMUP_S = 2.0
LAST_S = 10.0
RATE_WINDOW_S = 1.0
RECOVERY_SHARE = 0.9
STUCK_SHARE = 0.2
STUCK_AFTER_S = 30.0  # the shortest after-phase that can call a client stuck
QUICK_S = 5.0
BACKLOG_S = 0.75  # the listen queue holds this much work at C; the app holds some more (see the doc)
MIN_BACKLOG = 8
TRIGGER_KINDS = ("capacity", "slow")
WORK_FACTOR = 2.0
SLOW_DELAY_MS = 1000.0
NEVER = "never"
NOT_BACK = "not-back"
VERDICTS = ("quick", "slow", NOT_BACK, "stuck")
RULE = (
    f"back: every 1 s window at {RECOVERY_SHARE:.0%} or more of before for {SUSTAIN_S:g} s, and still there "
    f"at the end; stuck: under {STUCK_SHARE:.0%} of before at the end of an after-phase of "
    f"{STUCK_AFTER_S:g} s or more"
)


class MetastableError(ValueError):
    """A bad option: one line naming it and what is allowed."""

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"{option}: {problem}")
        self.option = option


@dataclass(frozen=True)
class MetastableOptions:
    """The phases, the trigger and the target's two answers. Invalid values raise MetastableError."""

    trigger_s: float = TRIGGER_S
    trigger_kind: str = "capacity"
    pre_s: float = PRE_S
    after_s: float = AFTER_S
    skip_abandoned: bool = False
    drop_expired: bool = False
    warmup_s: float = WARMUP_S  # not judged: the first seconds of the pre-trigger phase
    quick_s: float = QUICK_S  # a recovery within this is quick
    loads: tuple[float, ...] = ()  # phase-map only: the grid (comparison/phase_map.py)
    triggers: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        _check("--trigger-s", self.trigger_s, 0, MAX_PHASE_S)
        _check("--pre-trigger-s", self.pre_s, 2, MAX_PHASE_S)
        _check("--after-trigger-s", self.after_s, MIN_AFTER_S, MAX_PHASE_S)
        if self.trigger_kind not in TRIGGER_KINDS:
            raise MetastableError(
                "--trigger-kind", f"{self.trigger_kind!r} is not one of {', '.join(TRIGGER_KINDS)}"
            )

    @property
    def duration_s(self) -> float:
        return self.pre_s + self.trigger_s + self.after_s

    def target_args(self, capacity_rps: float) -> tuple[str, ...]:
        """The embedded target's flags: a listen queue of BACKLOG_S x C, and which answers are on."""
        backlog = max(MIN_BACKLOG, round(BACKLOG_S * capacity_rps))
        return (
            "--backlog", str(backlog),
            "--skip-abandoned" if self.skip_abandoned else "--no-skip-abandoned",
            "--drop-expired" if self.drop_expired else "--no-drop-expired",
        )  # fmt: skip

    def describe(self) -> str:
        answers = [name for name, on in (("--skip-abandoned", self.skip_abandoned),
                                         ("--drop-expired", self.drop_expired)) if on]  # fmt: skip
        target = " and ".join(answers) if answers else "--no-skip-abandoned (it checks nothing)"
        return (
            f"{self.pre_s:g} s steady, a {self.trigger_s:g} s {self.trigger_kind} trigger, "
            f"{self.after_s:g} s after; target {target}"
        )


def _check(option: str, value: float, low: float, high: float) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value) or not low <= value <= high:
        raise MetastableError(option, f"must be from {low:g} to {high:g} seconds, got {value!r}")


def add_arguments(parser: argparse.ArgumentParser, number: Callable[[str], Callable[[str], float]]) -> None:
    """The scenario's options on `python -m comparison`'s parser."""
    group = parser.add_argument_group("metastable and phase-map scenarios")
    group.add_argument("--trigger-s", type=number("trigger_s"),
                       help=f"metastable: trigger length in seconds (default {TRIGGER_S:g})")  # fmt: skip
    group.add_argument(
        "--trigger-kind",
        help=f"metastable: capacity (sync_work_ms x {WORK_FACTOR:g}) or slow (+{SLOW_DELAY_MS:g} ms a "
        "request, a slow fault); default capacity",
    )
    group.add_argument("--pre-trigger-s", type=number("pre_trigger_s"),
                       help=f"steady load before the trigger (default {PRE_S:g})")  # fmt: skip
    group.add_argument("--after-trigger-s", type=number("after_trigger_s"),
                       help=f"load after the trigger ends (default {AFTER_S:g})")  # fmt: skip
    group.add_argument("--skip-abandoned", action="store_true",
                       help="start the embedded target with --skip-abandoned (default: the seed's "
                       "server, which does the work of clients that hung up)")  # fmt: skip
    group.add_argument("--drop-expired", action="store_true",
                       help="start the embedded target with --drop-expired: work whose propagated deadline "
                       "has passed gets a fast 504 instead")  # fmt: skip


def from_args(args: argparse.Namespace, defaults: MetastableOptions) -> MetastableOptions:
    """The options for the metastable and phase-map scenarios, over `defaults` (the scenario refuses
    them for the others: comparison/__main__.py, from each scenario's `option_dests`)."""
    given = {
        "trigger_s": args.trigger_s, "trigger_kind": args.trigger_kind, "pre_s": args.pre_trigger_s,
        "after_s": args.after_trigger_s,
    }  # fmt: skip
    flags = {"skip_abandoned": args.skip_abandoned, "drop_expired": args.drop_expired}
    chosen = {k: v for k, v in given.items() if v is not None}
    return dataclasses.replace(defaults, **chosen, **flags)


OPTION_DESTS = (
    "trigger_s",
    "trigger_kind",
    "pre_trigger_s",
    "after_trigger_s",
    "skip_abandoned",
    "drop_expired",
)


# -- the maths ------------------------------------------------------------------------------------------

Points = Sequence[tuple[float, float]]


def _rate(points: Points, start: float, end: float) -> float | None:
    """The counter's growth per second between `start` and `end`, never below 0 (`counters.rate_between`)."""
    rate = rate_between(points, start, end)
    return None if rate is None else max(0.0, rate)


def windows(
    points: Points, start: float, end: float, width: float = RATE_WINDOW_S
) -> list[tuple[float, float]]:
    """(window start, rate) for consecutive windows of `width` seconds from `start`, each wholly inside
    [start, end] and inside the samples, stepping by a tenth of a window."""
    found = []
    step = width / 10
    t = start
    while t + width <= end + 1e-9:
        rate = _rate(points, t, t + width)
        if rate is not None:
            found.append((t, rate))
        t += step
    return found


@dataclass(frozen=True)
class Phases:
    """One client's verdict in the metastable scenario (see the module doc)."""

    pre_rps: float | None
    post_rps: float | None
    recovered: bool
    recovery_s: float | None
    peak_share: float | None
    verdict: str
    waited_s: float = 0.0  # the trigger's end to the end of what was judged

    @property
    def recovery_cell(self) -> float | str:
        return NEVER if self.recovery_s is None else self.recovery_s


def sustained_recovery(
    after: Sequence[tuple[float, float]], bar: float, sustain_s: float = SUSTAIN_S
) -> float | None:
    """The start of the first stretch of 1 s windows (start, rate), all at >= `bar`, that lasts
    `sustain_s` and is not undone by a later stretch as long below `bar`; None when there is none.
    A gap in the windows breaks a stretch."""
    found: float | None = None
    for high, first, last in _stretches(after, bar):
        if last + RATE_WINDOW_S - first < sustain_s - 1e-6:
            continue  # a spike or a dip too short to count either way
        if high and found is None:
            found = first
        elif not high:
            found = None  # it fell back for as long: the earlier stretch did not hold
    return found


def _stretches(after: Sequence[tuple[float, float]], bar: float) -> list[tuple[bool, float, float]]:
    """(at or above bar?, first window start, last window start) for each run of like windows."""
    runs: list[tuple[bool, float, float]] = []
    step = RATE_WINDOW_S / 10
    previous: float | None = None
    for t, rate in after:
        high = rate >= bar
        joined = previous is not None and t - previous <= 1.5 * step and runs and runs[-1][0] == high
        if joined:
            runs[-1] = (high, runs[-1][1], t)
        else:
            runs.append((high, t, t))
        previous = t
    return runs


def is_stuck(pre: float | None, post: float | None, waited_s: float, asked_after_s: float) -> bool:
    """Stuck: an after-phase of at least STUCK_AFTER_S (as asked; the trigger's start may slip by a poll,
    so `waited_s` may be a little less) and the last LAST_S still under STUCK_SHARE of before. The caller
    has already found it not back."""
    if asked_after_s < STUCK_AFTER_S or waited_s < STUCK_AFTER_S - 2 * RATE_WINDOW_S:
        return False
    return not pre or (post or 0.0) < STUCK_SHARE * pre


def verdict_for(recovery_s: float | None, stuck: bool, quick_s: float) -> str:
    """quick, slow, stuck or not-back (neither back nor long enough, or low enough, to call stuck)."""
    if recovery_s is not None:
        return "quick" if recovery_s <= quick_s else "slow"
    return "stuck" if stuck else NOT_BACK


def judge(
    points: Points,
    test_start: float,
    pre_s: float,
    trigger_s: float,
    after_s: float,
    *,
    warmup_s: float = WARMUP_S,
    quick_s: float = QUICK_S,
    asked_after_s: float | None = None,
) -> Phases:
    """Judge one client from its cumulative SLO-goodput samples (unix t, slo_ok_total). The post-trigger
    level is over the last LAST_S seconds, or the last half of a shorter after-phase. `asked_after_s` is
    the after-phase the user asked for (default `after_s`), which decides whether stuck can be told."""
    points = sorted(points)
    trigger_start = test_start + pre_s
    trigger_end = trigger_start + trigger_s
    end = trigger_end + after_s
    if points and trigger_end < points[-1][0] < end:
        end = points[-1][0]  # judge what was measured: the samples may stop short (a busy machine: 2.6 s)
    waited = round(max(0.0, end - trigger_end), 2)
    asked = after_s if asked_after_s is None else asked_after_s
    pre = _rate(points, test_start + warmup_s, trigger_start)
    post = _rate(points, end - min(LAST_S, after_s / 2), end)
    if not pre:
        verdict = verdict_for(None, is_stuck(pre, post, waited, asked), quick_s)
        return Phases(pre, post, False, None, None, verdict, waited)
    bar = RECOVERY_SHARE * pre
    after = windows(points, trigger_end, end)
    start = sustained_recovery(after, bar)
    still_there = post is not None and post >= bar
    recovery = round(start - trigger_end, 2) if start is not None and still_there else None
    peak_end = min(end, trigger_end + STUCK_AFTER_S)
    peak = max((rate for t, rate in after if t + RATE_WINDOW_S <= peak_end + 1e-9), default=0.0)
    stuck = recovery is None and is_stuck(pre, post, waited, asked)
    verdict = verdict_for(recovery, stuck, quick_s)
    return Phases(pre, post, recovery is not None, recovery, peak / pre, verdict, waited)


def trigger_window(url: str, options: MetastableOptions, allow_remote: bool = False) -> tuple[float, float]:
    """Start the trigger now on a Hammerlab target; the target ends it by itself. (start, end) unix s."""
    from comparison.target import change_capacity, request, sync_work_ms

    if options.trigger_kind == "capacity":
        work = sync_work_ms(url, allow_remote) * WORK_FACTOR
        return change_capacity(url, work, options.trigger_s, allow_remote)
    answer = request(
        "POST", url + "/admin/faults",
        {"kind": "slow", "delay_ms": SLOW_DELAY_MS, "duration_s": options.trigger_s},
        allow_remote=allow_remote,
    )  # fmt: skip
    started = float(answer["fault"]["started_at"])
    return started, started + options.trigger_s


def summary_fields(phases: Phases) -> dict[str, Any]:
    """The Summary fields this scenario fills (comparison/summary.py's metastable columns)."""
    return {
        "pre_trigger_slo_goodput_rps": phases.pre_rps,
        "post_trigger_slo_goodput_rps": phases.post_rps,
        "recovered": "yes" if phases.recovered else "no",
        "recovery_s": phases.recovery_cell,
        "peak_share": phases.peak_share,
        "verdict": phases.verdict,
    }


def adjust(summary: Summary, result: ClassResult, options: MetastableOptions) -> Summary:
    """The summary row with this scenario's columns, judged from the class's SLO-goodput samples."""
    rows = read_client(result.files.mitigations, result.client)
    if not rows:
        return summary
    phases = judge_rows(rows, result.capacity_change, options)
    return dataclasses.replace(summary, **summary_fields(phases))


def judge_rows(
    rows: Sequence[ClientRow], trigger: tuple[float, float] | None, options: MetastableOptions
) -> Phases:
    """Judge one class's rows: phases from Locust's test start (each row's timestamp - elapsed_s) and
    the trigger as the runner started it (a poll after its due time), the run ending on schedule."""
    start = min(row.timestamp - row.elapsed_s for row in rows)
    pre, length = options.pre_s, options.trigger_s
    if trigger is not None:
        pre, length = trigger[0] - start, trigger[1] - trigger[0]
    after = options.duration_s - pre - length
    return judge(
        [(row.timestamp, row.slo_ok_total) for row in rows], start, pre, length, after,
        warmup_s=options.warmup_s, quick_s=options.quick_s, asked_after_s=options.after_s,
    )  # fmt: skip
