"""`python -m comparison [options] [-- locust and mitigation options]`

Exit codes: 0 when every class ran; 2 for a bad option or an unreachable --host (one line on stderr);
1 when the run could not go on (the target would not start, Locust failed); 130 after Ctrl-C and 143
after SIGTERM, with the finished classes' files and summary kept.
"""

from __future__ import annotations

import argparse
import math
import re
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from comparison import ROOT
from comparison.config import (
    DEFAULT_CLIENTS,
    DEFAULT_DRAIN_S,
    DEFAULT_DURATION_S,
    DEFAULT_SCENARIO,
    DEFAULT_SLO_MS,
    FLEET_WORKERS,
    MAX_DRAIN_S,
    MAX_DURATION_S,
    MAX_SLO_MS,
    MAX_WORKERS,
    MIN_DURATION_S,
    SCENARIO_DURATION_S,
    SCENARIOS,
    ConfigError,
    RunConfig,
    parse_mix,
)
from comparison.inputs import results_dir_problem
from comparison.own_service import OptionProblem, add_arguments, from_args, lift_request

PROG = "python -m comparison"


class UsageError(Exception):
    """argparse's complaint, as one line."""


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


# Plain ASCII only: float() would also take '3_0', full-width digits, 'nan' and 'inf'.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _number(option: str, whole: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        shown = repr(text) if len(text) <= 40 else repr(text[:38]) + "…"
        if len(text) > 40 or not _DECIMAL.fullmatch(text.strip(" ")):
            raise argparse.ArgumentTypeError(
                f"{shown} is not a number (plain digits like 12.5; no _, nan or inf)"
            )
        value = float(text)
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{shown} is too large")
        if whole and not value.is_integer():
            raise argparse.ArgumentTypeError(f"{shown} must be a whole number of seconds")
        return value

    parse.__name__ = option
    return parse


def _count(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


_count.__name__ = "workers"


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog=PROG,
        description=(
            "Run every client class against the same scenario, one after another, each in a real "
            "`locust --headless` process, and write results/<scenario>-<UTC time>/ with summary.csv, "
            "summary.md and report.html. Options after `--` go to every Locust process unchanged "
            "(mitigation knobs such as --max-concurrent 8 --breaker-mode rate)."
        ),
    )
    scenarios = "; ".join(f"{name}: {text}" for name, text in SCENARIOS.items())
    parser.add_argument(
        "--scenario", default=DEFAULT_SCENARIO, help=f"{scenarios} (default {DEFAULT_SCENARIO})"
    )
    parser.add_argument(
        "--clients",
        help="comma-separated user classes from locustfiles/, run in this order (default: the six seed's)",
    )
    parser.add_argument(
        "--duration",
        type=_number("duration", whole=True),
        help=(
            f"seconds per class, {MIN_DURATION_S:g} to {MAX_DURATION_S:g} (default {DEFAULT_DURATION_S:g}; "
            + ", ".join(f"{name} {seconds:g}" for name, seconds in SCENARIO_DURATION_S.items())
            + ")"
        ),
    )
    parser.add_argument(
        "--capacity", type=_number("capacity"), help="capacity C in requests/s; skips the probe"
    )
    parser.add_argument(
        "--rate-multiplier",
        type=_number("rate_multiplier"),
        help="offer this multiple of C instead of the scenario's (burst: the peak's)",
    )
    parser.add_argument(
        "--launch-rate",
        type=_number("launch_rate"),
        help="offer this many requests/s instead (burst: the peak rate)",
    )
    parser.add_argument(
        "--host", help="use the target at this URL instead of starting one (e.g. http://127.0.0.1:3000)"
    )
    parser.add_argument(
        "--results-dir", default=str(ROOT / "results"), help="where run folders go (default results/)"
    )
    parser.add_argument(
        "--probe-seconds",
        type=_number("probe_seconds"),
        default=3.0,
        help="length of the capacity probe in seconds, 1 to 30 (default 3)",
    )
    parser.add_argument(
        "--slo-ms",
        type=_number("slo_ms"),
        default=DEFAULT_SLO_MS,
        help=f"a 2xx answered within this many ms of its scheduled launch is SLO goodput, the verdict "
        f"column (1 to {MAX_SLO_MS:g}; default {DEFAULT_SLO_MS:g})",
    )
    parser.add_argument(
        "--drain-s",
        type=_number("drain_s"),
        default=DEFAULT_DRAIN_S,
        help=f"after each class's run time, wait this long for requests in flight before counting them "
        f"unfinished (0 to {MAX_DRAIN_S:g}; default {DEFAULT_DRAIN_S:g})",
    )
    parser.add_argument(
        "--workers",
        type=_count,
        help=f"run each class as a Locust master with this many worker processes, 1 to {MAX_WORKERS}: "
        "each worker is one client instance with its own pipeline; the offered load is split evenly "
        f"over them (default 1: one process; fleet {FLEET_WORKERS})",
    )
    parser.add_argument(
        "--target-workers",
        type=_count,
        default=1,
        help=f"run the embedded target under gunicorn with this many gevent workers, 1 to {MAX_WORKERS} "
        "(default 1: one python -m target_server process); the probe measures the C they reach together",
    )
    parser.add_argument(
        "--mix",
        help="run these classes together in one run instead of one after another, with this many users "
        "each (per client instance), e.g. 'NaiveRetryClient:1,AdaptiveClient:3': a class's share of the "
        "offered load is its share of the users",
    )
    add_arguments(parser, _number)
    from comparison.metastable import add_arguments as add_metastable
    from comparison.phase_map import add_arguments as add_phase_map

    add_metastable(parser, _number)
    add_phase_map(parser)
    parser.add_argument(
        "--rerun", help="repeat the run in this folder (its run.json) into a new folder beside it"
    )
    return parser


def parse_config(argv: Sequence[str]) -> RunConfig:
    """Options before `--` are the runner's, the rest go to Locust. Raises ConfigError or UsageError."""
    argv = list(argv)
    passthrough: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1 :]
    args = build_parser().parse_args(argv)
    mix = parse_mix(args.mix) if args.mix is not None else ()
    if mix and args.clients is not None:
        raise ConfigError("--mix", "names the classes of the run; leave out --clients")
    named = args.clients if args.clients is not None else ",".join(DEFAULT_CLIENTS)
    clients = tuple(name for name, _ in mix) or tuple(n.strip() for n in named.split(",") if n.strip())
    lifted, passthrough = lift_request(passthrough)
    try:
        service = from_args(args, lifted)
    except OptionProblem as problem:
        raise ConfigError(problem.option, problem.problem) from None
    from comparison.gates import check_clients as gate_problem

    if problem := gate_problem(service.gates, clients):
        raise ConfigError("--check", problem)
    metastable = _metastable(args)
    if metastable is not None:
        if args.duration is not None:
            raise ConfigError("--duration", f"the {args.scenario} scenario's phases set it; use "
                              "--pre-trigger-s, --trigger-s and --after-trigger-s")  # fmt: skip
        if args.host:
            raise ConfigError("--host", f"the {args.scenario} scenario starts its own target (its queue and "
                              "checks are part of the model); leave --host out")  # fmt: skip
        if args.clients is None and args.mix is None:
            from comparison.phase_map import DEFAULT_CLIENTS as MAP_CLIENTS

            clients = MAP_CLIENTS if args.scenario == "phase-map" else METASTABLE_CLIENTS
        args.duration = metastable.duration_s
    return RunConfig(
        scenario=args.scenario,
        clients=clients,
        duration_s=args.duration
        if args.duration is not None
        else SCENARIO_DURATION_S.get(args.scenario, DEFAULT_DURATION_S),
        host=args.host.rstrip("/") if args.host else None,
        capacity=args.capacity,
        rate_multiplier=args.rate_multiplier,
        launch_rate=args.launch_rate,
        results_dir=Path(args.results_dir),
        probe_s=args.probe_seconds,
        slo_ms=args.slo_ms,
        drain_s=args.drain_s,
        passthrough=tuple(passthrough),
        workers=args.workers
        if args.workers is not None
        else (FLEET_WORKERS if args.scenario == "fleet" else 1),
        target_workers=args.target_workers,
        mix=mix,
        service=service,
        metastable=metastable,
    )


METASTABLE_CLIENTS = ("NaiveRetryClient", "RetryClient", "SreThrottleClient", "AdaptiveClient")


def _metastable(args: argparse.Namespace):  # -> MetastableOptions | None
    from comparison.metastable import MetastableError, MetastableOptions, from_args
    from comparison.phase_map import DEFAULT_LOADS, DEFAULT_TRIGGERS, MetastableDefaults, parse_list

    defaults = MetastableDefaults if args.scenario == "phase-map" else MetastableOptions()
    if args.scenario != "phase-map" and (args.loads is not None or args.triggers is not None):
        named = "--loads" if args.loads is not None else "--triggers"
        raise ConfigError(named, "only for --scenario phase-map")
    try:
        options = from_args(args, args.scenario, defaults)
    except MetastableError as error:
        raise ConfigError(error.option, str(error).split(": ", 1)[1]) from None
    if options is not None and args.scenario == "phase-map":
        loads = parse_list("--loads", args.loads, DEFAULT_LOADS, 0.05, 20)
        triggers = parse_list("--triggers", args.triggers, DEFAULT_TRIGGERS, 0, 300)
        options = replace(options, loads=loads, triggers=triggers, trigger_s=max(triggers))
    return options


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        argv = _rerun(argv)
        config = parse_config(argv)
    except (ConfigError, UsageError) as error:
        hint = " (options for Locust go after --)" if "unrecognized arguments" in str(error) else ""
        print(f"{PROG}: error: {error}{hint}", file=sys.stderr)
        return 2
    problem = results_dir_problem(config.results_dir)
    if problem:
        print(f"{PROG}: error: --results-dir: {str(config.results_dir)!r} {problem}", file=sys.stderr)
        return 2
    from comparison.runner import RunFailed, run  # after validation: a bad option answers at once
    from comparison.signals import Interrupted

    if config.scenario == "phase-map":
        from comparison.phase_map import run_map

        run = run_map  # a grid of metastable runs instead of one
    try:
        outcome = run(config, argv=[PROG, *argv])
    except ConfigError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except RunFailed as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2 if error.usage else 1
    except KeyboardInterrupt as interrupt:  # before the run folder existed, or a second Ctrl-C
        print(f"{PROG}: interrupted", file=sys.stderr)
        return interrupt.exit_code if isinstance(interrupt, Interrupted) else 130
    return _judge_gates(config, outcome)


def _rerun(argv: list[str]) -> list[str]:
    """`--rerun DIR [--baseline DIR2]`: the argv recorded in DIR/run.json, writing beside DIR."""
    own = argv[: argv.index("--")] if "--" in argv else argv
    if not any(token == "--rerun" or token.startswith("--rerun=") for token in own):
        return argv
    args = build_parser().parse_args(own)
    given = sum(1 if "=" in token else 2 for token in own if token.startswith(("--rerun", "--baseline")))
    given += own.count("--allow-remote")  # the opt-in is the user's to type again; run.json never grants it
    if given != len(own) or "--" in argv:
        raise UsageError(
            "--rerun repeats a run exactly as it was: give it alone (with --baseline at most); only "
            "--allow-remote may be typed again, since run.json never grants it"
        )
    from comparison.rerun import RerunError, rerun_argv

    try:
        baseline = Path(args.baseline) if args.baseline else None
        repeated = rerun_argv(Path(args.rerun), baseline, "--allow-remote" in own)
    except RerunError as error:
        raise UsageError(str(error)) from None
    print(f"{PROG}: rerunning {args.rerun}: {shlex.join(repeated)}", file=sys.stderr)
    return repeated


def _judge_gates(config: RunConfig, outcome: object) -> int:
    """Each --check for each class it names: one line per failed gate, --junit, exit 1 on a failure."""
    exit_code: int = outcome.exit_code  # type: ignore[attr-defined]
    service = config.service
    if service is None or not service.gates:
        return exit_code
    from comparison.gates import judge_all, write_junit

    verdicts = judge_all(service.gates, outcome.summaries, config.clients)  # type: ignore[attr-defined]
    failed = [verdict for verdict in verdicts if not verdict.passed]
    for verdict in failed:
        print(verdict.line)
    print(f"gates: {len(verdicts) - len(failed)} passed, {len(failed)} failed")
    if service.junit is not None:
        write_junit(service.junit, verdicts)
        print(f"junit:   {service.junit}")
    return exit_code or (1 if failed else 0)


if __name__ == "__main__":
    sys.exit(main())
