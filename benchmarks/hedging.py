"""Issue 22's hedging targets in one run: every target with the measured value and PASS or MISS.

It drives the comparison runner's Python API (`comparison.runner.run`), so every figure comes from the
same files and summary code as `python -m comparison`. Two stages, each a runner run against the
embedded target (restarted for every class, loopback only):

  1. tail    the `tail` scenario at 0.5 x C (2 % of requests held 800 ms at the server, independent of
             load): HedgedClient beside CombinedClient (the same pipeline without the hedge). Its probe
             measures C on the plain target; C is used from here on. 150 s per class: at 0.5 x C (C is
             about 80-90/s here) that is 6,000-6,700 calls, so the p99.9 rests on six calls or more.
  2. cliff   2 x C, open loop: HedgedClient (budget 5 %, pause 2 s: the defaults) beside ThrottledClient,
             and NaiveHedgeClient (no budget, no pause, no throttle or breaker under it: naive hedging)
             shown as the storm it is; context, not a target.

    .venv/bin/python benchmarks/hedging.py            # the full run: 150 s of tail, 60 s at 2 x C, ~10 min
    .venv/bin/python benchmarks/hedging.py --quick    # short stages, a smoke run of ~2 min
    .venv/bin/python benchmarks/hedging.py --check    # exit 1 if any target is missed

"Requests at the server" is the target's own requests_total (PREFIX_server.csv), every copy it received;
amplification is that over the calls launched (the ledger's launched). Results go to
results/hedging-<UTC time>/ (one folder per stage, plus targets.md and targets.json). Targets are the
issue's and are never loosened here: a MISS is reported with what was measured.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the repo's packages importable
    sys.path.insert(0, str(ROOT))

from benchmarks._targets import (  # noqa: E402
    Check,
    OneLineParser,
    Report,
    TargetRun,
    equivalent_command,
    run_targets,
    target_parser,
)
from comparison.config import RunConfig  # noqa: E402
from comparison.readers import ClassFiles  # noqa: E402
from comparison.scenarios.tail import hedges, server_requests  # noqa: E402
from comparison.summary import Summary  # noqa: E402

PROG = "benchmarks/hedging.py"
HEDGED = "HedgedClient"
COMBINED = "CombinedClient"
THROTTLED = "ThrottledClient"
NAIVE = "NaiveHedgeClient"  # HedgeConfig.naive() on a pipeline with nothing under it: the storm

# The targets.
P999_FACTOR = 0.3  # HedgedClient's p99.9 <= this x CombinedClient's, in the tail scenario
MAX_EXTRA = 0.05  # for at most this share of extra requests at the server
MAX_AMPLIFICATION = 1.05  # at 2 x C: requests at the server / calls


@dataclass(frozen=True)
class Durations:
    """Seconds per class in each stage."""

    tail: float
    cliff: float


FULL = Durations(tail=150, cliff=60)
QUICK = Durations(tail=20, cliff=10)


@dataclass(frozen=True)
class Row:
    """One class of one stage: its summary and what the server received."""

    summary: Summary
    received: int | None
    hedged: int | None
    hedge_won: int | None

    @property
    def per_call(self) -> float | None:
        launched = self.summary.launched
        return self.received / launched if self.received is not None and launched else None

    def record(self) -> dict[str, object]:
        s = self.summary
        return {"received": self.received, "launched": s.launched, "hedged": self.hedged,
                "hedge_won": self.hedge_won, "p99_ms": s.p99_ms, "p999_ms": s.p999_ms,
                "slo_goodput_rps": s.slo_goodput_rps}  # fmt: skip

    def hedges(self) -> str:
        if self.hedged is None:
            return "no hedges"
        return f"{self.hedged:,} hedges ({self.hedge_won:,} won)" if self.hedge_won is not None else ""


@dataclass(frozen=True)
class Stages:
    tail: dict[str, Row]
    cliff: dict[str, Row]


def _ms(value: float | None) -> str:
    return "not measured" if value is None else f"{value:,.0f} ms"


def _x(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.3f} x"


def _number(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


def evaluate(stages: Stages) -> list[Check]:
    """Every hedging target against the measured rows. A missing class or value is a MISS."""
    return [*_tail(stages.tail), *_cliff(stages.cliff)]


def _tail(rows: dict[str, Row]) -> list[Check]:
    hedged, combined = rows.get(HEDGED), rows.get(COMBINED)
    p999 = hedged.summary.p999_ms if hedged else None
    base = combined.summary.p999_ms if combined else None
    per_call = hedged.per_call if hedged else None
    extra = per_call - 1 if per_call is not None else None
    beside = (
        f"p99: {HEDGED} {_ms(hedged.summary.p99_ms if hedged else None)}, "
        f"{COMBINED} {_ms(combined.summary.p99_ms if combined else None)}"
    )
    return [
        Check(
            1,
            "tail at 0.5 x C: p99.9",
            HEDGED,
            measured=_ms(p999) + (f" = {p999 / base:.2f} x" if _number(p999) and base else ""),
            required=f"<= {P999_FACTOR:g} x {COMBINED}'s ({_ms(base)})",
            passed=_number(p999) and _number(base) and p999 <= P999_FACTOR * base,  # type: ignore[operator]
            beside=beside,
        ),
        Check(
            1,
            "tail at 0.5 x C: extra requests at the server",
            HEDGED,
            measured="not measured" if extra is None else f"{extra:+.1%}",
            required=f"<= {MAX_EXTRA:.0%}",
            passed=extra is not None and extra <= MAX_EXTRA,
            beside=(hedged.hedges() if hedged else "")
            + (f"; {COMBINED} {combined.per_call - 1:+.1%}" if combined and combined.per_call else ""),
        ),
    ]


def _cliff(rows: dict[str, Row]) -> list[Check]:
    hedged, throttled, storm = rows.get(HEDGED), rows.get(THROTTLED), rows.get(NAIVE)
    amplification = hedged.per_call if hedged else None
    goodput = hedged.summary.slo_goodput_rps if hedged else None
    floor = throttled.summary.slo_goodput_rps if throttled else None
    return [
        Check(
            2,
            "cliff at 2 x C: amplification (requests at the server / calls)",
            HEDGED,
            measured=_x(amplification) + (f", {hedged.hedges()}" if hedged else ""),
            required=f"<= {MAX_AMPLIFICATION:g} x",
            passed=amplification is not None and amplification <= MAX_AMPLIFICATION,
            beside=f"{THROTTLED} {_x(throttled.per_call if throttled else None)}",
        ),
        Check(
            2,
            "cliff at 2 x C: SLO goodput",
            HEDGED,
            measured="not measured" if goodput is None else f"{goodput:.1f}/s",
            required=f">= {THROTTLED}'s" + ("" if floor is None else f" ({floor:.1f}/s)"),
            passed=goodput is not None and floor is not None and goodput >= floor,
        ),
        Check(
            2,
            "cliff at 2 x C: amplification of naive hedging (no budget, no pause, no throttle), the storm",
            NAIVE,
            measured=_x(storm.per_call if storm else None) + (f", {storm.hedges()}" if storm else ""),
            required="shown, not judged",
            passed=None,
            beside="SLO goodput "
            + ("not measured" if storm is None else f"{storm.summary.slo_goodput_rps:.1f}/s")
            + (f", p99 {_ms(storm.summary.p99_ms)}" if storm else ""),
        ),
    ]


def rows_of(outcome: object) -> dict[str, Row]:
    """Each class of a runner outcome with the requests its target received and its hedges."""
    run_dir = Path(outcome.run_dir)  # type: ignore[attr-defined]
    found = {}
    for summary in outcome.summaries:  # type: ignore[attr-defined]
        files = ClassFiles(run_dir / summary.client)
        hedged, won = hedges(files.mitigations, summary.client)
        found[summary.client] = Row(summary, server_requests(files.server), hedged, won)
    return found


def run_stages(durations: Durations, bench: TargetRun) -> Stages:
    """Run the two stages through the comparison runner. Raises SystemExit on a failed run."""
    folder = bench.folder

    def stage(title: str, config: RunConfig) -> dict[str, Row]:
        return rows_of(bench.stage(title, config, argv=equivalent_command(config, PROG)))

    # the scenario's name only here, as a user would type it: comparison/ names no scenario
    tail = stage("tail", RunConfig("tail", (COMBINED, HEDGED), durations.tail, results_dir=folder))
    c = tail[HEDGED].summary.capacity_rps
    three = (HEDGED, THROTTLED, NAIVE)
    cliff = stage("2x overload", RunConfig("cliff", three, durations.cliff, capacity=c, results_dir=folder))
    return Stages(tail, cliff)


def report(stages: Stages, bench: TargetRun) -> Report:
    some = next(iter(stages.tail.values()), None)
    c = some.summary.capacity_rps if some else math.nan
    context = [
        bench.measured(),
        f"C = {c:.1f} requests/s, from the runner's closed-loop probe on the plain target in this run. "
        "The tail: 2 % of requests held 800 ms at the server (its slow fault), at 0.5 x C. Naive hedging: "
        f"{NAIVE}, the hedge with no budget and no pause and nothing under it to hold load back.",
    ]
    record = {
        "runs": bench.runs,
        "rows": {
            stage: {name: row.record() for name, row in rows.items()}
            for stage, rows in (("tail", stages.tail), ("cliff", stages.cliff))
        },
    }
    return "Issue 22 hedging targets", context, evaluate(stages), record


def build_parser() -> OneLineParser:
    return target_parser(PROG, __doc__.split("\n\n")[0], ROOT / "results", "hedging")


def main(argv: Sequence[str] | None = None) -> int:
    return run_targets(argv, build_parser(), "hedging", (FULL, QUICK), run_stages, report)


if __name__ == "__main__":
    sys.exit(main())
