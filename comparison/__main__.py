"""`python -m comparison [options] [-- locust and mitigation options]`

Exit codes: 0 when every class ran; 2 for a bad option or an unreachable --host (one line on stderr);
1 when the run could not go on (the target would not start, Locust failed); 130 after Ctrl-C and 143
after SIGTERM, with the finished classes' files and summary kept.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from comparison.config import (
    DEFAULT_CLIENTS,
    DEFAULT_DRAIN_S,
    DEFAULT_DURATION_S,
    DEFAULT_SCENARIO,
    DEFAULT_SLO_MS,
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
from comparison.external import add_arguments as add_external_arguments
from comparison.external import from_args as external_from_args
from comparison.external import instances
from comparison.inputs import results_dir_problem
from comparison.own_service import OptionProblem, add_arguments, from_args, lift_request
from comparison.scenarios import REGISTRY, scenario_of
from target_server.numbers import DECIMAL, parse_int

PROG = "python -m comparison"


class UsageError(Exception):
    """argparse's complaint, as one line."""


class OneLineParser(argparse.ArgumentParser):
    """No abbreviations (`--rer DIR` is not `--rerun DIR`), and argparse's complaint as one line."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(allow_abbrev=False, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def _number(option: str, whole: bool = False) -> Callable[[str], float]:
    """The runner's numbers in the project's one strict syntax (target_server/numbers.py): plain ASCII
    digits, finite; float() would also take '3_0', full-width or Arabic-Indic digits, 'nan' and 'inf'."""

    def parse(text: str) -> float:
        shown = repr(text) if len(text) <= 40 else repr(text[:38]) + "…"
        if len(text) > 40 or not DECIMAL.fullmatch(text.strip(" ")):
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
        return parse_int(text)
    except ValueError:
        shown = repr(text) if len(text) <= 40 else repr(text[:38]) + "…"
        raise argparse.ArgumentTypeError(
            f"{shown} is not a whole number (plain ASCII digits; no _ or non-ASCII digits)"
        ) from None


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
        help="comma-separated user classes from locustfiles/ (and --locustfile), run in this order "
        "(default: the six seed's)",
    )
    parser.add_argument(
        "--locustfile",
        help="your own locustfile (one .py file): its MitigatedClient subclasses run beside the lab's, "
        "e.g. --locustfile my_locustfile.py --clients MyClient,ThrottledClient",
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
        "--results-dir", default="results", help="where run folders go (default results/, in this folder)"
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
        "over them (default 1: one process; "
        + ", ".join(f"{name} {s.workers}" for name, s in REGISTRY.items() if s.workers != 1)
        + ")",
    )
    add_external_arguments(parser, _count)
    parser.add_argument(
        "--target-workers",
        type=_count,
        default=1,
        help=f"run the embedded target under gunicorn with this many gevent workers, 1 to {MAX_WORKERS} "
        "(default 1: one python -m target_server process); the probe measures the C they reach together",
    )
    parser.add_argument(
        "--priority-shedding",
        action="store_true",
        help="start the embedded target with --priority-shedding (after the probe): requests sent with "
        "Hammerlab-Criticality: sheddable are shed from a lower lag than critical ones "
        "(docs/target-server.md)",
    )
    parser.add_argument(
        "--mix",
        help="run these classes together in one run instead of one after another, with this many users "
        "each (per client instance), e.g. 'NaiveRetryClient:1,AdaptiveClient:3': a class's share of the "
        "offered load is its share of the users",
    )
    add_arguments(parser, _number)
    for scenario in REGISTRY.values():
        scenario.add_arguments(parser, _number)
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
    locustfile = _locustfile(args.locustfile)
    external = external_from_args(args)
    scenario = _refuse_others_options(args)
    options = scenario.options(args)
    chosen = scenario.defaults(args, options)
    clients = chosen.get("clients", clients)
    duration = args.duration if args.duration is not None else chosen.get("duration_s", scenario.duration_s)
    return RunConfig(
        scenario=args.scenario,
        clients=clients,
        duration_s=duration,
        host=args.host.rstrip("/") if args.host else None,
        capacity=args.capacity,
        rate_multiplier=args.rate_multiplier,
        launch_rate=args.launch_rate,
        results_dir=Path(args.results_dir),
        probe_s=args.probe_seconds,
        slo_ms=args.slo_ms,
        drain_s=args.drain_s,
        passthrough=tuple(passthrough),
        workers=instances(args, external, scenario.workers),
        target_workers=args.target_workers,
        priority_shedding=args.priority_shedding,
        mix=mix,
        service=service,
        scenario_options=options,
        locustfile=locustfile,
        external=external,
    )


def _locustfile(text: str | None):  # -> UserLocustfile | None
    if text is None:
        return None
    from comparison.user_locustfile import LocustfileError, UserLocustfile

    try:
        return UserLocustfile.check(text)
    except LocustfileError as error:
        raise ConfigError("--locustfile", str(error)) from None


def _refuse_others_options(args: argparse.Namespace):  # -> Scenario
    """The chosen scenario; a ConfigError for an option only other scenarios take (or for an unknown
    --scenario, in RunConfig's words)."""
    if args.scenario not in REGISTRY:
        RunConfig(scenario=args.scenario)  # raises the one line that lists the scenarios
    mine = scenario_of(args.scenario).option_dests
    for scenario in REGISTRY.values():
        for dest in scenario.option_dests:
            if dest not in mine and getattr(args, dest) not in (None, False):
                owners = [name for name, s in REGISTRY.items() if dest in s.option_dests]
                raise ConfigError("--" + dest.replace("_", "-"), f"only for --scenario {' or '.join(owners)}")
    return scenario_of(args.scenario)


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
    if config.external is not None and (problem := config.external.bind_problem()):
        print(f"{PROG}: error: {problem}", file=sys.stderr)
        return 2
    from comparison import runner  # after validation: a bad option answers at once
    from comparison.runner import RunFailed, run
    from comparison.signals import Interrupted

    try:
        scenario = scenario_of(config.scenario)
        outcome = scenario.run(config, sys.stdout, [PROG, *argv], runner) or run(config, argv=[PROG, *argv])
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
        try:
            write_junit(service.junit, verdicts)
        except (OSError, ValueError) as error:  # checked at start; the file changed during the run
            print(f"{PROG}: error: --junit: cannot write {str(service.junit)!r} ({error})", file=sys.stderr)
            return exit_code or 1
        print(f"junit:   {service.junit}")
    return exit_code or (1 if failed else 0)


if __name__ == "__main__":
    sys.exit(main())
