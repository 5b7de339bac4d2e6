"""Issue 13's numbers in one run: AdaptiveClient against the best static cap, with PASS or MISS.

It drives the comparison runner's Python API (`comparison.runner.run`), so every figure comes from the
same files as `python -m comparison`. Every stage runs against the embedded default target (restarted for
every class, loopback only), and every stage after the first uses the C the first one probed:

  1. 2 x C     AdaptiveClient (its probe measures C); then the candidates for its default (aimd, vegas,
               and gradient without the SLO, the old rule), and ThrottledClient at every static cap of
               STATIC_CAPS, each a runner run of its own with the cap passed after `--`.
  2. outage    0.8 x C with a 10 s outage: AdaptiveClient beside HammerClient.
  3. capacity, capacity-up   1.1 x C while sync_work_ms doubles (halves) for 20 s: AdaptiveClient and
               ThrottledClient at every static cap. SLO goodput is judged per phase (before, changed,
               restored), each from SETTLE_S after its start, against the best static cap of that phase.

    .venv/bin/python benchmarks/adaptive.py            # the full run, about 19 minutes on 2 cores
    .venv/bin/python benchmarks/adaptive.py --quick    # short stages, a smoke run
    .venv/bin/python benchmarks/adaptive.py --check    # exit 1 if any target is missed

Results go to results/adaptive-<UTC time>/: one folder per runner run, targets.md, targets.json and
limit-<scenario>.svg (the adaptive limit over time beside the best static cap of each phase).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the repo's packages importable
    sys.path.insert(0, str(ROOT))

from benchmarks._targets import (  # noqa: E402
    Check,
    OneLineParser,
    Report,
    TargetRun,
    run_targets,
    target_parser,
)
from comparison.config import SETTLE_S, RunConfig  # noqa: E402

PROG = "benchmarks/adaptive.py"
ADAPTIVE = "AdaptiveClient"
STATIC = "ThrottledClient"
HAMMER = "HammerClient"
STATIC_CAPS = (4, 8, 12, 16, 24, 32)
CANDIDATES: dict[str, tuple[str, ...]] = {  # label -> options after `--`; the default runs first
    "aimd": ("--adaptive-algorithm", "aimd"),
    "vegas": ("--adaptive-algorithm", "vegas"),
    "gradient, no SLO": ("--adaptive-slo-share", "0"),
}
CAPACITY_SCENARIOS = ("capacity", "capacity-up")
PHASES = ("before", "changed", "restored")

# The targets.
CLIFF_SHARE = 0.95  # SLO goodput at 2 x C / the best static cap's
RECOVERY_S = 1.0  # and never slower than HammerClient's
PHASE_SHARE = 0.95  # per capacity phase / that phase's best static cap (issue 20; issue 13 asked 0.90)


@dataclass(frozen=True)
class Durations:
    cliff: float
    outage: float
    capacity: float


FULL = Durations(cliff=30, outage=30, capacity=50)
QUICK = Durations(cliff=10, outage=20, capacity=32)


def cap_label(cap: int) -> str:
    return f"cap {cap}"


@dataclass
class Measured:
    """What the checks need. SLO goodput in requests/s by label (`AdaptiveClient`, `cap 16`, `aimd`)."""

    cliff: dict[str, float] = field(default_factory=dict)
    cliff_errors: int | None = None
    recovery: dict[str, float | str | None] = field(default_factory=dict)  # by client; "never" possible
    phases: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # scenario, phase, label


def _best(values: dict[str, float], labels: Sequence[str]) -> tuple[str, float] | None:
    present = [(label, values[label]) for label in labels if label in values]
    return max(present, key=lambda item: item[1]) if present else None


def _ratio_check(
    number: int, target: str, share: float, mine: float | None, best: tuple[str, float] | None, beside: str
) -> Check:
    if mine is None or best is None or best[1] <= 0:
        return Check(
            number, target, ADAPTIVE, "not measured", f">= {share:.2f} x best static cap", False, beside
        )
    ratio = mine / best[1]
    return Check(
        number,
        target,
        ADAPTIVE,
        measured=f"{mine:.1f}/s = {ratio:.2f} x",
        required=f">= {share:.2f} x {best[0]} ({best[1]:.1f}/s)",
        passed=ratio >= share,
        beside=beside,
    )


def _fmt_recovery(value: float | str | None) -> str:
    if value is None:
        return "not measured"
    return value if isinstance(value, str) else f"{value:.2f} s"


def evaluate(measured: Measured) -> list[Check]:
    """Every issue-13 target against the measurements. A missing value is a MISS."""
    caps = [cap_label(cap) for cap in STATIC_CAPS]
    statics = ", ".join(f"{label} {measured.cliff[label]:.1f}" for label in caps if label in measured.cliff)
    others = ", ".join(
        f"{label} {measured.cliff[label]:.1f}" for label in CANDIDATES if label in measured.cliff
    )
    checks = [
        _ratio_check(
            1,
            "2x C: SLO goodput / best static cap",
            CLIFF_SHARE,
            measured.cliff.get(ADAPTIVE),
            _best(measured.cliff, caps),
            f"static: {statics}; other algorithms: {others}",
        ),
        Check(
            1,
            "2x C: server-side errors",
            ADAPTIVE,
            measured="not measured" if measured.cliff_errors is None else str(measured.cliff_errors),
            required="0",
            passed=measured.cliff_errors == 0,
        ),
    ]
    mine, hammer = measured.recovery.get(ADAPTIVE), measured.recovery.get(HAMMER)
    numeric = isinstance(mine, int | float) and not math.isnan(mine)
    checks.append(
        Check(
            2,
            "after a 10 s outage: back to 90 % of offered",
            ADAPTIVE,
            measured=_fmt_recovery(mine),
            required=f"<= {RECOVERY_S:g} s and <= {HAMMER}'s",
            passed=numeric
            and mine <= RECOVERY_S  # type: ignore[operator]
            and (not isinstance(hammer, int | float) or mine <= hammer + 1e-9),  # type: ignore[operator]
            beside=f"{HAMMER} {_fmt_recovery(hammer)}",
        )
    )
    for scenario in CAPACITY_SCENARIOS:
        for phase in PHASES:
            values = measured.phases.get(scenario, {}).get(phase, {})
            beside = ", ".join(f"{label} {values[label]:.1f}" for label in caps if label in values)
            checks.append(
                _ratio_check(
                    3,
                    f"{scenario}, {phase} phase: SLO goodput / best static cap",
                    PHASE_SHARE,
                    values.get(ADAPTIVE),
                    _best(values, caps),
                    beside,
                )
            )
    return checks


# -- reading a run's files ----------------------------------------------------------------------------


def phase_windows(change: tuple[float, float], first: float, last: float) -> dict[str, tuple[float, float]]:
    """Each phase from SETTLE_S after its start to its end (unix seconds)."""
    return {
        "before": (first + SETTLE_S, change[0]),
        "changed": (change[0] + SETTLE_S, change[1]),
        "restored": (change[1] + SETTLE_S, last),
    }


def phase_slo_goodput(mitigations_csv: Path, client: str, change: tuple[float, float]) -> dict[str, float]:
    """SLO goodput (answers within the SLO per second) in each phase, from the client's sampled totals."""
    from comparison.readers import read_client
    from comparison.summary import rate_between

    rows = read_client(mitigations_csv, client)
    if not rows:
        return {}
    points = [(row.timestamp, float(row.slo_ok_total)) for row in rows]
    first, last = min(t for t, _ in points), max(t for t, _ in points)
    out = {}
    for phase, (start, end) in phase_windows(change, first, last).items():
        rate = rate_between(points, start, end) if end > start else None
        if rate is not None:
            out[phase] = max(0.0, rate)
    return out


def limit_series(mitigations_csv: Path, client: str) -> list[tuple[float, float]]:
    import csv

    with mitigations_csv.open(newline="", encoding="utf-8") as handle:
        return [
            (float(row["timestamp"]), float(row["limit"]))
            for row in csv.DictReader(handle)
            if row["worker"] == "all" and row["client"] == client and row["limit"]
        ]


def plot_limit(
    path: Path,
    scenario: str,
    series: list[tuple[float, float]],
    change: tuple[float, float],
    best_caps: dict[str, int],
) -> None:
    """The adaptive limit over time beside the best static cap of each phase, as an SVG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not series:
        return
    t0 = series[0][0]
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.plot(
        [t - t0 for t, _ in series], [v for _, v in series], color="#1565c0", label="AdaptiveClient limit"
    )
    last = series[-1][0] - t0
    spans = {
        "before": (0.0, change[0] - t0),
        "changed": (change[0] - t0, change[1] - t0),
        "restored": (change[1] - t0, last),
    }
    for i, (phase, (start, end)) in enumerate(spans.items()):
        if phase in best_caps:
            ax.hlines(
                best_caps[phase],
                start,
                end,
                colors="#e65100",
                linestyles="--",
                label="best static cap of the phase" if i == 0 else None,
            )
    ax.axvspan(change[0] - t0, change[1] - t0, color="#bbdefb", alpha=0.5, lw=0)
    ax.set_xlabel("seconds")
    ax.set_ylabel("in flight allowed")
    ax.set_title(f"{scenario}: the adaptive limit and the best static cap per phase")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="svg")
    plt.close(fig)


# -- running ------------------------------------------------------------------------------------------


def run_all(durations: Durations, bench: TargetRun) -> tuple[Measured, dict[str, object]]:
    """Every stage through the comparison runner. Raises SystemExit on an interrupt or a failed run."""
    folder = bench.folder
    notes: dict[str, object] = {"runs": bench.runs}
    measured = Measured()
    stage = bench.stage

    first = stage(
        "2x C: AdaptiveClient", RunConfig("cliff", (ADAPTIVE,), durations.cliff, results_dir=folder)
    )
    (row,) = first.summaries
    c = row.capacity_rps
    notes["capacity_rps"] = c
    measured.cliff[ADAPTIVE] = row.slo_goodput_rps
    measured.cliff_errors = row.server_errors
    for label, extra in CANDIDATES.items():
        outcome = stage(
            f"2x C: {label}",
            RunConfig(
                "cliff", (ADAPTIVE,), durations.cliff, capacity=c, results_dir=folder, passthrough=extra
            ),
        )
        measured.cliff[label] = outcome.summaries[0].slo_goodput_rps
    for cap in STATIC_CAPS:
        outcome = stage(
            f"2x C: {cap_label(cap)}",
            RunConfig(
                "cliff",
                (STATIC,),
                durations.cliff,
                capacity=c,
                results_dir=folder,
                passthrough=("--max-concurrent", str(cap)),
            ),
        )
        measured.cliff[cap_label(cap)] = outcome.summaries[0].slo_goodput_rps
    outage = stage(
        "outage", RunConfig("outage", (ADAPTIVE, HAMMER), durations.outage, capacity=c, results_dir=folder)
    )
    measured.recovery = {summary.client: summary.recovery_s for summary in outage.summaries}
    for scenario in CAPACITY_SCENARIOS:
        by_phase: dict[str, dict[str, float]] = {phase: {} for phase in PHASES}
        runs = [(ADAPTIVE, ADAPTIVE, ())] + [
            (cap_label(cap), STATIC, ("--max-concurrent", str(cap))) for cap in STATIC_CAPS
        ]
        limit_run = None
        for label, client, extra in runs:
            outcome = stage(
                f"{scenario}: {label}",
                RunConfig(
                    scenario, (client,), durations.capacity, capacity=c, results_dir=folder, passthrough=extra
                ),
            )
            record = json.loads((outcome.run_dir / "run.json").read_text())
            window = record["classes"][client].get("capacity_change", {}).get("window")
            if not window:
                continue
            csv_path = outcome.run_dir / f"{client}_mitigations.csv"
            for phase, value in phase_slo_goodput(csv_path, client, (window[0], window[1])).items():
                by_phase[phase][label] = value
            if client == ADAPTIVE:
                limit_run = (limit_series(csv_path, client), (window[0], window[1]))
        measured.phases[scenario] = by_phase
        if limit_run is not None:
            caps = [cap_label(cap) for cap in STATIC_CAPS]
            best = {phase: _best(values, caps) for phase, values in by_phase.items()}
            best_caps = {phase: int(b[0].split()[1]) for phase, b in best.items() if b}
            plot_limit(folder / f"limit-{scenario}.svg", scenario, limit_run[0], limit_run[1], best_caps)
            series = limit_run[0]
            notes[f"limit_median_{scenario}"] = (
                {
                    phase: _median([v for t, v in series if s <= t < e])
                    for phase, (s, e) in phase_windows(limit_run[1], series[0][0], series[-1][0]).items()
                }
                if series
                else {}
            )
            notes[f"best_static_{scenario}"] = best_caps
    return measured, notes


def _median(values: list[float]) -> float:
    import statistics

    return statistics.median(values) if values else math.nan


def build_parser() -> OneLineParser:
    return target_parser(PROG, __doc__.split("\n\n")[0], ROOT / "results", "adaptive")


def report(result: tuple[Measured, dict[str, object]], bench: TargetRun) -> Report:
    measured, notes = result
    context = [
        bench.measured(),
        f"C = {notes['capacity_rps']:.1f} requests/s from the first run's closed-loop probe; every other run "
        "was given that C.",
    ]
    for scenario in CAPACITY_SCENARIOS:
        medians = notes.get(f"limit_median_{scenario}")
        if isinstance(medians, dict) and medians:
            best = notes.get(f"best_static_{scenario}", {})
            context.append(
                f"{scenario}: the adaptive limit's median by phase "
                + ", ".join(f"{phase} {value:g}" for phase, value in medians.items())
                + f"; best static cap by phase {best}."
            )
    return "Issue 13 targets", context, evaluate(measured), {"measured": asdict(measured), "notes": notes}


def main(argv: Sequence[str] | None = None) -> int:
    return run_targets(argv, build_parser(), "adaptive", (FULL, QUICK), run_all, report)


if __name__ == "__main__":
    sys.exit(main())
