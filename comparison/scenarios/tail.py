"""`tail`: 0.5 x C against a target that holds a share of requests for a long time, independent of load.
What does each class do to the p99 and p99.9, and how many extra requests does it send for it?

The tail is the target's `slow` fault (`--fault slow:rate=S,delay_ms=D`, by default 2 % of /doWork
requests wait 800 ms on a timer before the normal work). Why the fault and not the heavy-tailed latency
profile (examples/latency-profile-heavy-tail.json): the fault adds a wait and no CPU, so the target's
capacity is the C the probe measured on the plain target and 0.5 x C is really half of it; its share and
delay are exact, so the p99 and p99.9 a class should reach are known (without hedging both lie in the
tail); and a second copy of a held request is served at normal speed, which is the case hedging is for.
The profile replaces the whole work model (and with it C), and its tail is a spread, not one number.
`--tail-share` and `--tail-delay-ms` pick another tail within TAIL_SHARES and TAIL_DELAYS_MS.

The scenario starts its own target (the fault is one of its flags), so it refuses `--host`. Each class's
row gains `server_requests` (the target's requests_total, PREFIX_server.csv: every copy that reached it),
`requests_per_call_x` (server_requests / launched, the amplification as the server saw it: 1.00 when
every call was sent once) and `hedged` and `hedge_won` (PREFIX_mitigations.csv, empty for a class without
a hedge layer). p99_ms and p999_ms are the shared columns.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from comparison.errors import ConfigError, check_range, num
from comparison.plan import LoadPlan
from comparison.readers import read_server
from comparison.scenarios.base import Number, Prepared, RunSettings, Scenario
from comparison.summary import ClassResult, Summary
from comparison.words import ms, pct
from mitigations.csv_schema import ALL_WORKERS

SHARE = 0.02
DELAY_MS = 800.0
TAIL_SHARES = (0.001, 0.2)  # below 1 in 1,000 a 30 s run at 0.5 x C sees a handful; above, it is no tail
TAIL_DELAYS_MS = (50.0, 5000.0)
CLIENTS = ("CombinedClient", "HedgedClient")


@dataclass(frozen=True)
class TailOptions:
    """The tail: the share of requests held and for how long; a bad one raises ConfigError naming it."""

    share: float = SHARE
    delay_ms: float = DELAY_MS

    def __post_init__(self) -> None:
        check_range("--tail-share", self.share, *TAIL_SHARES, "(a share of requests)")
        check_range("--tail-delay-ms", self.delay_ms, *TAIL_DELAYS_MS, "ms")

    @property
    def fault(self) -> str:
        """The target's flag value: `slow:rate=0.02,delay_ms=800`."""
        return f"slow:rate={self.share:g},delay_ms={self.delay_ms:g}"

    def describe(self) -> str:
        return f"{pct(self.share)} of requests held {self.delay_ms:,.0f} ms at the server"


class Tail(Scenario):
    name = "tail"
    order = 97
    help = "0.5 x C, a share of requests held long at the server (a tail): p99, p99.9 and extra requests"
    multiplier = 0.5
    fault = "gives a share of requests a long tail (the target's slow fault)"
    option_dests = ("tail_share", "tail_delay_ms")
    columns = ("server_requests", "requests_per_call_x", "hedged", "hedge_won")
    clients = CLIENTS

    def add_arguments(self, parser: argparse.ArgumentParser, number: Number) -> None:
        group = parser.add_argument_group(f"{self.name} scenario")
        group.add_argument(
            "--tail-share",
            type=number("tail_share"),
            help=f"{self.name}: the share of requests held, {num(TAIL_SHARES[0])} to {num(TAIL_SHARES[1])} "
            f"(default {num(SHARE)})",
        )
        group.add_argument(
            "--tail-delay-ms",
            type=number("tail_delay_ms"),
            help=f"{self.name}: how long each is held, {num(TAIL_DELAYS_MS[0])} to {num(TAIL_DELAYS_MS[1])} "
            f"ms (default {num(DELAY_MS)})",
        )

    def options(self, args: argparse.Namespace) -> TailOptions:
        share = SHARE if args.tail_share is None else args.tail_share
        return TailOptions(share, DELAY_MS if args.tail_delay_ms is None else args.tail_delay_ms)

    def defaults(self, args: argparse.Namespace, options: Any) -> dict[str, Any]:
        if args.host:
            raise ConfigError("--host", f"the {self.name} scenario starts its own target (the tail is one "
                              "of its flags); leave --host out")  # fmt: skip
        return {"clients": self.clients} if args.clients is None and args.mix is None else {}

    def prepare(self, config: RunSettings, plan: LoadPlan, capacity_rps: float) -> Prepared:
        options = _options(config)
        return Prepared(plan, ("--fault", options.fault), f"The tail: {options.describe()}.")

    def adjust(self, summary: Summary, result: ClassResult, plan: LoadPlan, config: RunSettings) -> Summary:
        received = server_requests(result.files.server)
        hedged, won = hedges(result.files.mitigations, result.client)
        per_call = received / summary.launched if received is not None and summary.launched else None
        return self.extra(
            summary, server_requests=received, requests_per_call_x=per_call, hedged=hedged, hedge_won=won
        )

    def event_words(self, plan: LoadPlan) -> str:
        return ", with a share of requests held long at the server (a tail independent of load)"

    def story(self, summaries: Sequence[Summary], plan: LoadPlan) -> list[str] | None:
        return tail_sentences(summaries)

    def section(
        self,
        plan: LoadPlan,
        results: Sequence[ClassResult],
        summaries: Sequence[Summary],
        config: RunSettings,
    ) -> str:
        head = "".join(f"<th>{escape(label)}</th>" for label, _ in _TABLE)
        rows = "".join(
            "<tr>" + "".join(f"<td>{escape(cell(s))}</td>" for _, cell in _TABLE) + "</tr>" for s in summaries
        )
        return (
            "<h2>The tail</h2>"
            f"<p>{escape(_options(config).describe().capitalize())}, independent of load. Extra requests: "
            "the requests the server received per call launched, minus one (hedges and retries).</p>"
            f"<table><tr>{head}</tr>{rows}</table>"
            + "".join(f"<p>{escape(sentence)}</p>" for sentence in tail_sentences(summaries))
        )

    def markdown(
        self, run_dir: Path, plan: LoadPlan, results: Sequence[ClassResult], summaries: Sequence[Summary]
    ) -> str:
        lines = [
            "## The tail",
            "",
            "| " + " | ".join(label for label, _ in _TABLE) + " |",
            "| " + " | ".join("---" for _ in _TABLE) + " |",
        ]
        lines += ["| " + " | ".join(cell(s) for _, cell in _TABLE) + " |" for s in summaries]
        return "\n".join(lines) + "\n"


def _options(config: RunSettings) -> TailOptions:
    options = config.scenario_options
    return options if isinstance(options, TailOptions) else TailOptions()


def server_requests(path: Path) -> int | None:
    """The /doWork requests the target received over the class's run (its counter starts at 0: the
    scenario's target is started afresh for every class)."""
    counts = [row.requests_total for row in read_server(path) if row.requests_total is not None]
    return max(counts) if counts else None


def hedges(path: Path, client: str) -> tuple[int | None, int | None]:
    """`hedged` and `hedge_won` from the class's last `all` row; None for a class without a hedge layer."""
    if not path.exists():
        return None, None
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["worker"] == ALL_WORKERS and r["client"] == client]
    if not rows:
        return None, None
    last = max(rows, key=lambda r: float(r["timestamp"]))

    def count(name: str) -> int | None:
        text = last.get(name) or ""
        return int(float(text)) if text else None

    return count("hedged"), count("hedge_won")


def per_call(s: Summary) -> float | None:
    value = s.value("requests_per_call_x")
    return float(value) if isinstance(value, int | float) else None


def extra_requests(s: Summary) -> str:
    """`+1.9 % (18 hedges, 17 won)`: the requests the server received beyond one per call."""
    found = per_call(s)
    said = "n/a" if found is None else f"{(found - 1) * 100:+.1f} %"
    hedged, won = s.value("hedged"), s.value("hedge_won")
    if isinstance(hedged, int) and isinstance(won, int):
        said += f" ({hedged:,} hedges, {won:,} won)"
    return said


_TABLE = (
    ("class", lambda s: s.client),
    ("p99", lambda s: ms(s.p99_ms)),
    ("p99.9", lambda s: ms(s.p999_ms)),
    ("calls", lambda s: f"{s.launched:,}"),
    ("requests at the server", lambda s: "n/a" if s.value("server_requests") is None
     else f"{s.value('server_requests'):,}"),
    ("extra requests", extra_requests),
)  # fmt: skip


def tail_sentences(summaries: Sequence[Summary]) -> list[str]:
    """Who cut the tail most (the lowest p99.9), against the class with the highest, and at what cost."""
    timed = [s for s in summaries if s.p999_ms is not None]
    if not timed:
        return ["The tail could not be measured: no class answered a call."]
    ranked = sorted(timed, key=lambda s: (s.p999_ms, s.p99_ms or 0.0))
    low, high = ranked[0], ranked[-1]

    def said(s: Summary) -> str:
        return f"p99 {ms(s.p99_ms)}, p99.9 {ms(s.p999_ms)}, {extra_requests(s)} extra requests"

    if len(ranked) == 1:
        return [f"Against the tail, {low.client} had {said(low)}."]
    ratio = f" ({low.p999_ms / high.p999_ms:.2f} x)" if high.p999_ms else ""
    sentences = [
        f"Against the tail, {low.client} had the lowest p99.9, {ms(low.p999_ms)} against "
        f"{high.client}'s {ms(high.p999_ms)}{ratio}, for {extra_requests(low)} extra requests "
        f"({high.client}: {extra_requests(high)})."
    ]
    if len(ranked) > 2:
        sentences.append("The others: " + "; ".join(f"{s.client} {said(s)}" for s in ranked[1:-1]) + ".")
    return sentences


SCENARIO = Tail()
