"""Issue 20's Pareto benchmark: static caps and the adaptive modes at 2 x C, in one run, with PASS or MISS.

It is the user's sweep (`python -m comparison --scenario sweep`, comparison/scenarios/sweep.py) with four
points added: one probe of C against the embedded default target, then one Locust run per point, each on
a freshly started target, all at 2 x C:

  ThrottledClient --max-concurrent 8, 12, 16, 24, 32, 48, 64     (the static caps: STATIC_CAPS)
  AdaptiveClient --adaptive-algorithm gradient, then knee, then knee --adaptive-dither 10, then that
  with --adaptive-elasticity 7 (knee-tuned: aimed at 24-30 in flight)      (the adaptive modes: MODES)

It prints each point's SLO goodput, p50, p99 and server lag p95, marks the Pareto front of SLO goodput
(higher is better) against p99 (lower is better) and the knee of the caps, and judges each adaptive mode
against the issue's first three targets:

  1. SLO goodput / the best static cap's >= 0.97
  2. p99 <= 300 ms, and no static cap has both more SLO goodput and a lower p99 (on the front)
  3. server lag p95 <= 140 ms

    .venv/bin/python benchmarks/pareto.py                 # the full run: 11 points x 30 s, about 10 minutes
    .venv/bin/python benchmarks/pareto.py --quick         # 5 s points: a smoke run, not the figures
    .venv/bin/python benchmarks/pareto.py --check         # exit 1 if any target is missed
    .venv/bin/python benchmarks/pareto.py --svg docs/pareto-front.svg   # also draw the front there

Results go to results/pareto-<UTC time>/: the sweep's folder (summary.csv, summary.md, report.html,
points/), targets.md and targets.json.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the repo's packages importable
    sys.path.insert(0, str(ROOT))

from benchmarks._targets import (  # noqa: E402
    Check,
    Report,
    TargetRun,
    UsageError,
    run_targets,
    target_parser,
)
from comparison import pareto  # noqa: E402
from comparison.config import RunConfig  # noqa: E402
from comparison.scenarios.sweep import Setting, SweepOptions, point_of, run_points  # noqa: E402

PROG = "benchmarks/pareto.py"
STATIC = "ThrottledClient"
ADAPTIVE = "AdaptiveClient"
STATIC_CAPS = (8, 12, 16, 24, 32, 48, 64)
MODES: dict[str, tuple[str, ...]] = {  # label -> AdaptiveClient's options
    "gradient": ("--adaptive-algorithm", "gradient"),
    "knee": ("--adaptive-algorithm", "knee"),
    "knee-dither": ("--adaptive-algorithm", "knee", "--adaptive-dither", "10"),
    "knee-tuned": ("--adaptive-algorithm", "knee", "--adaptive-dither", "10", "--adaptive-elasticity", "7"),
}
MULTIPLIER = 2.0
SHARE = 0.97  # SLO goodput / the best static cap's
P99_MS = 300.0
LAG_MS = 140.0


@dataclass(frozen=True)
class Durations:
    point: float  # seconds of load per point
    drain: float  # the runner's --drain-s


FULL = Durations(point=30, drain=10)
QUICK = Durations(point=5, drain=2)


@dataclass
class Measured:
    points: list[pareto.Point]
    run_dir: Path
    svg: str | None


def settings() -> list[Setting]:
    caps = SweepOptions("max-concurrent", tuple(str(cap) for cap in STATIC_CAPS)).settings(STATIC)
    modes = [Setting(f"{ADAPTIVE} {mode}", ADAPTIVE, args, None) for mode, args in MODES.items()]
    return [*caps, *modes]


def measure(durations: Durations, bench: TargetRun, svg: str | None = None) -> Measured:
    from comparison import runner

    config = RunConfig(
        scenario="sweep",
        clients=(STATIC,),
        duration_s=durations.point,
        rate_multiplier=MULTIPLIER,
        drain_s=durations.drain,
        results_dir=bench.folder,
        scenario_options=SweepOptions("max-concurrent", tuple(str(cap) for cap in STATIC_CAPS)),
    )
    try:
        outcome = run_points(config, settings(), runner, out=bench.out, argv=[PROG])
    except runner.RunFailed as error:
        raise SystemExit(f"{PROG}: error: {error}") from None
    if outcome.exit_code:
        raise SystemExit(outcome.exit_code)
    bench.runs["sweep"] = str(outcome.run_dir)
    return Measured([point_of(s) for s in outcome.summaries], outcome.run_dir, svg)


def judge(points: Sequence[pareto.Point]) -> list[Check]:
    """Each adaptive mode against the issue's first three targets; the best static cap beside it."""
    caps = [p for p in points if p.value is not None]
    top = pareto.best(caps)
    checks: list[Check] = []
    number = 0
    for mode in (p for p in points if p.value is None):
        share = mode.slo_goodput_rps / top.slo_goodput_rps if top and top.slo_goodput_rps > 0 else 0.0
        beaten = [c.label for c in caps if c.slo_goodput_rps > mode.slo_goodput_rps and c.tail < mode.tail]
        where = "beaten by " + ", ".join(beaten) if beaten else "on the front"
        best = f"best static cap: {top.label}, {top.slo_goodput_rps:.1f}/s" if top else "no static cap"
        checks += [
            Check(number + 1, "SLO goodput / the best static cap's", mode.label, f"{share:.3f}",
                  f">= {SHARE:.2f}", share >= SHARE, best),
            Check(number + 2, "p99, and on the front", mode.label,
                  f"{pareto.ms(mode.p99_ms)}, {where}",
                  f"<= {P99_MS:g} ms, no cap with more SLO goodput and a lower p99",
                  mode.tail <= P99_MS and not beaten),
            Check(number + 3, "server lag p95", mode.label, pareto.ms(mode.lag_p95_ms), f"<= {LAG_MS:g} ms",
                  mode.lag_p95_ms is not None and mode.lag_p95_ms <= LAG_MS),
        ]  # fmt: skip
        number += 3
    return checks


def report(measured: Measured, bench: TargetRun) -> Report:
    points = measured.points
    pick, sentence = pareto.recommend(points, "--max-concurrent")
    if measured.svg:
        title = f"SLO goodput against p99 at {MULTIPLIER:g} x C ({bench.kind} run)"
        Path(measured.svg).write_text(pareto.front_svg(points, title, pick) + "\n", encoding="utf-8")
    context = [
        bench.measured(),
        "",
        pareto.markdown_table(points),
        "",
        f"Static caps: {sentence}",
        pareto.RULES,
        f"Run folder: {measured.run_dir}" + (f"; the front drawn in {measured.svg}" if measured.svg else ""),
    ]
    record = {"points": [p.__dict__ for p in points], "runs": bench.runs}
    return "Issue 20: the Pareto front at 2 x C", context, judge(points), record


def main(argv: Sequence[str] | None = None) -> int:
    parser = target_parser(PROG, __doc__.splitlines()[0], ROOT / "results", "pareto")
    parser.add_argument("--svg", metavar="PATH", help="also write the front as an SVG there (docs/...)")
    try:
        svg = parser.parse_known_args(sys.argv[1:] if argv is None else argv)[0].svg
    except UsageError:
        svg = None  # run_targets says what is wrong, in one line
    if svg and not Path(svg).resolve().parent.is_dir():
        print(f"{PROG}: error: --svg: {svg!r}: its folder does not exist", file=sys.stderr)
        return 2
    return run_targets(argv, parser, "pareto", (FULL, QUICK), lambda d, b: measure(d, b, svg), report)


if __name__ == "__main__":
    sys.exit(main())
