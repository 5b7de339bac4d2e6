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
LAST_S seconds), recovered (post >= RECOVERY_SHARE x pre), recovery_s (trigger end to the start of the
first RATE_WINDOW_S window at RECOVERY_SHARE x pre; "never" when not recovered), peak_share (the best
such window in the STUCK_WINDOW_S after the trigger, over pre: under STUCK_SHARE means stuck the whole
time) and a verdict: quick (recovered within QUICK_S), slow (recovered later) or stuck.
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
MIN_AFTER_S = 5.0
MAX_PHASE_S = 300.0
WARMUP_S = 2.0
LAST_S = 10.0
RATE_WINDOW_S = 1.0
RECOVERY_SHARE = 0.9
STUCK_SHARE = 0.2
STUCK_WINDOW_S = 30.0
QUICK_S = 5.0
BACKLOG_S = 0.75  # the listen queue holds this much work at C; the app holds some more (see the doc)
MIN_BACKLOG = 8
TRIGGER_KINDS = ("capacity", "slow")
WORK_FACTOR = 2.0
SLOW_DELAY_MS = 1000.0
NEVER = "never"
VERDICTS = ("quick", "slow", "stuck")


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

    @property
    def recovery_cell(self) -> float | str:
        return NEVER if self.recovery_s is None else self.recovery_s


def judge(
    points: Points,
    test_start: float,
    pre_s: float,
    trigger_s: float,
    after_s: float,
    *,
    warmup_s: float = WARMUP_S,
    quick_s: float = QUICK_S,
) -> Phases:
    """Judge one client from its cumulative SLO-goodput samples (unix t, slo_ok_total). The post-trigger
    level is over the last LAST_S seconds, or the last half of a shorter after-phase."""
    points = sorted(points)
    trigger_start = test_start + pre_s
    trigger_end = trigger_start + trigger_s
    end = trigger_end + after_s
    if points and end - 1.0 <= points[-1][0] < end:
        end = points[-1][0]  # the last sample of the launch window falls a little short of its end
    pre = _rate(points, test_start + warmup_s, trigger_start)
    post = _rate(points, end - min(LAST_S, after_s / 2), end)
    if not pre:
        return Phases(pre, post, False, None, None, "stuck")
    bar = RECOVERY_SHARE * pre
    recovered = post is not None and post >= bar
    after = windows(points, trigger_end, end)
    first = next((t for t, rate in after if rate >= bar), None)
    recovery = None if not recovered or first is None else round(first - trigger_end, 2)
    stuck_end = min(end, trigger_end + STUCK_WINDOW_S)
    peak = max((rate for t, rate in after if t + RATE_WINDOW_S <= stuck_end + 1e-9), default=0.0)
    verdict = "stuck" if recovery is None else "quick" if recovery <= quick_s else "slow"
    return Phases(pre, post, recovered, recovery, peak / pre, verdict)


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
        warmup_s=options.warmup_s, quick_s=options.quick_s,
    )  # fmt: skip
