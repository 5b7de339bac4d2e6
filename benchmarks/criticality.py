"""Issue 22's criticality targets in one run: every target with the measured value and PASS or MISS.

It drives the comparison runner's Python API (`comparison.runner.run`), so every figure comes from the
same files and summary code as `python -m comparison`. Two stages, each `cliff` (2 x C, open loop) with
AdaptiveClient and `--criticality-mix critical=0.3`, against the embedded target (restarted for every
class, loopback only) with its toobusy check on (`TARGET_REJECT_IF_TOO_BUSY`):

  1. plain       without priorities: the labels are sent and counted, honoured by nobody (the client
                 with `--shed-sheddable-first false`, the target without `--priority-shedding`). Its
                 probe measures C on the target; C is used from here on.
  2. priorities  the client's gate refuses sheddable calls first, and the target runs with
                 `--priority-shedding` (the comparison's flag of that name), rejecting sheddable requests at a
                 lower lag than critical ones.

    .venv/bin/python benchmarks/criticality.py            # the full run: 60 s per stage, ~3 min
    .venv/bin/python benchmarks/criticality.py --quick    # 10 s stages, a smoke run of ~1 min
    .venv/bin/python benchmarks/criticality.py --check    # exit 1 if any target is missed

Results go to results/criticality-<UTC time>/ (one folder per stage, plus targets.md and targets.json).
Targets are the issue's and are never loosened here: a MISS is reported with what was measured.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
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
from comparison.summary import Summary  # noqa: E402

PROG = "benchmarks/criticality.py"
ADAPTIVE = "AdaptiveClient"
MIX = ("--criticality-mix", "critical=0.3")
NO_PRIORITIES = (*MIX, "--shed-sheddable-first", "false")
TOOBUSY = {"TARGET_REJECT_IF_TOO_BUSY": "true"}

# The targets.
MIN_CRITICAL_ATTAINMENT = 0.99
MIN_GOODPUT_SHARE = 0.95  # total SLO goodput with priorities >= this x the same client without


@dataclass(frozen=True)
class Durations:
    """Seconds per class in each stage."""

    cliff: float


FULL = Durations(cliff=60)
QUICK = Durations(cliff=10)


@dataclass(frozen=True)
class Stages:
    plain: Summary | None
    priorities: Summary | None


def _share(value: object) -> str:
    return "not measured" if not isinstance(value, float) or math.isnan(value) else f"{value:.3f}"


def _rps(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.1f}/s"


def _attainments(s: Summary | None) -> str:
    if s is None:
        return "not measured"
    return (
        f"critical {_share(s.value('critical_slo_attainment'))}, sheddable "
        f"{_share(s.value('sheddable_slo_attainment'))}; all {_share(s.slo_attainment)}"
    )


def evaluate(stages: Stages) -> list[Check]:
    """Every criticality target against the measured summaries. A missing class or value is a MISS."""
    plain, prio = stages.plain, stages.priorities
    critical = prio.value("critical_slo_attainment") if prio else None
    goodput = prio.slo_goodput_rps if prio else None
    floor = plain.slo_goodput_rps if plain else None
    who = ADAPTIVE + " + --priority-shedding"
    return [
        Check(
            1,
            "cliff at 2 x C, critical=0.3: critical SLO attainment",
            who,
            measured=_share(critical),
            required=f">= {MIN_CRITICAL_ATTAINMENT:g}",
            passed=isinstance(critical, float) and critical >= MIN_CRITICAL_ATTAINMENT,
            beside=_attainments(prio),
        ),
        Check(
            1,
            "cliff at 2 x C, critical=0.3: total SLO goodput",
            who,
            measured=_rps(goodput) + (f" = {goodput / floor:.2f} x" if goodput is not None and floor else ""),
            required=f">= {MIN_GOODPUT_SHARE:g} x without priorities ({_rps(floor)})",
            passed=goodput is not None and floor is not None and goodput >= MIN_GOODPUT_SHARE * floor,
        ),
        Check(
            2,
            "the same without priorities: critical SLO attainment",
            ADAPTIVE + " without priorities",
            measured=_share(plain.value("critical_slo_attainment") if plain else None),
            required="shown, not judged",
            passed=None,
            beside=_attainments(plain),
        ),
    ]


@contextlib.contextmanager
def target_env(values: Mapping[str, str]) -> Iterator[None]:
    """The embedded target reads TARGET_* from the environment it inherits: set them for one stage."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_stages(durations: Durations, bench: TargetRun) -> Stages:
    """Run both stages through the comparison runner. Raises SystemExit on a failed run."""
    folder = bench.folder

    def stage(title: str, config: RunConfig, env: Mapping[str, str]) -> Summary | None:
        with target_env(env):
            outcome = bench.stage(title, config, argv=equivalent_command(config, PROG, env))
        return next((s for s in outcome.summaries if s.client == ADAPTIVE), None)

    # the scenario's name only here, as a user would type it: comparison/ names no scenario
    plain = stage(
        "2x overload, without priorities",
        RunConfig("cliff", (ADAPTIVE,), durations.cliff, results_dir=folder, passthrough=NO_PRIORITIES),
        TOOBUSY,
    )
    c = plain.capacity_rps if plain else None
    prio = stage(
        "2x overload, with priorities",
        RunConfig(
            "cliff",
            (ADAPTIVE,),
            durations.cliff,
            capacity=c,
            results_dir=folder,
            passthrough=MIX,
            priority_shedding=True,
        ),
        TOOBUSY,
    )
    return Stages(plain, prio)


def report(stages: Stages, bench: TargetRun) -> Report:
    c = stages.plain.capacity_rps if stages.plain else math.nan
    context = [
        bench.measured(),
        f"C = {c:.1f} requests/s, from the runner's closed-loop probe in stage 1. Both stages: `cliff` "
        f"(2 x C), {ADAPTIVE} with `{' '.join(MIX)}`, the target's toobusy check on. Without priorities: "
        "`--shed-sheddable-first false`, no `--priority-shedding`.",
    ]
    record = {
        "runs": bench.runs,
        "rows": {name: None if s is None else s.cells() for name, s in
                 (("plain", stages.plain), ("priorities", stages.priorities))},
    }  # fmt: skip
    return "Issue 22 criticality targets", context, evaluate(stages), record


def build_parser() -> OneLineParser:
    return target_parser(PROG, __doc__.split("\n\n")[0], ROOT / "results", "criticality")


def main(argv: Sequence[str] | None = None) -> int:
    return run_targets(argv, build_parser(), "criticality", (FULL, QUICK), run_stages, report)


if __name__ == "__main__":
    sys.exit(main())
