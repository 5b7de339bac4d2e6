"""The comparison's options for testing your own service: the request, the guard rails, the gates.

They are kept together in one frozen value (`ServiceOptions`, a field of `RunConfig`) so the runner's
other options stay as they were. The request options (`--path`, `--method`, `--header`, `--body`,
`--body-file`) may be given before `--` or, as Locust options, after it: either way the probe sends the
same request as the Locust clients, because the runner reads both (`lift_request`) and passes its own
to every Locust process ahead of the passthrough (where Locust's last value wins, as it does here).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from comparison.gates import Gate, GateError, parse_gate
from comparison.inputs import output_file_problem, path_problem
from mitigations.guard import parse_conditions, remote_problem
from mitigations.metrics_map import check_url, parse_mapping
from mitigations.request import (
    METHODS,
    RequestSpec,
    parse_body,
    parse_body_file,
    parse_header,
    parse_headers,
    parse_method,
)

DEFAULT_MAX_PROBE_RPS = 500.0
MAX_PROBE_RPS = 5000.0
REQUEST_FLAGS = ("--path", "--method", "--header", "--body", "--body-file")
LIFTED_FLAGS = (*REQUEST_FLAGS, "--allow-remote", "--abort-on", "--server-metrics", "--server-metric")


class OptionProblem(ValueError):
    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"{option}: {problem}")
        self.option = option
        self.problem = problem


@dataclass(frozen=True)
class ServiceOptions:
    """What to send, whether a remote host may be loaded, when to stop, and what must hold at the end."""

    method: str = "GET"
    path: str = "/doWork"
    headers: tuple[str, ...] = ()
    body: str = ""
    body_file: str = ""
    allow_remote: bool = False
    max_probe_rps: float = DEFAULT_MAX_PROBE_RPS
    abort_on: tuple[str, ...] = ()
    checks: tuple[str, ...] = ()
    junit: Path | None = None
    baseline: Path | None = None
    server_metrics: str = ""  # a Prometheus endpoint for the server columns (docs/server-metrics.md)
    server_metric: tuple[str, ...] = ()  # COLUMN=SERIES maps onto them
    gates: tuple[Gate, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        _try("--method", parse_method, self.method)
        if problem := path_problem(self.path):
            raise OptionProblem("--path", f"{self.path!r} {problem}")
        for header in self.headers:
            _try("--header", parse_header, header)
        _try("--header", parse_headers, list(self.headers))
        _try("--body", parse_body, self.body)
        _try("--body-file", parse_body_file, self.body_file)
        if self.body and self.body_file:
            raise OptionProblem("--body", "give --body or --body-file, not both")
        if not 1 <= self.max_probe_rps <= MAX_PROBE_RPS:
            raise OptionProblem(
                "--max-probe-rps",
                f"must be from 1 to {MAX_PROBE_RPS:g} requests/s, got {self.max_probe_rps:g}",
            )
        try:
            parse_conditions(self.abort_on, remote=False)
        except ValueError as exc:
            raise OptionProblem("--abort-on", str(exc)) from None
        try:
            object.__setattr__(self, "gates", tuple(parse_gate(text) for text in self.checks))
        except GateError as exc:
            raise OptionProblem("--check", str(exc)) from None
        if self.junit is not None and not self.checks:
            raise OptionProblem("--junit", "needs at least one --check to write")
        if self.junit is not None and (problem := output_file_problem(str(self.junit))):
            raise OptionProblem("--junit", f"{str(self.junit)!r} {problem}")
        if self.server_metric and not self.server_metrics:
            raise OptionProblem("--server-metric", "needs --server-metrics URL to read the series from")
        if self.server_metrics:
            _try("--server-metrics", check_url, self.server_metrics)
            if not self.server_metrics.startswith("/") and (
                problem := remote_problem(self.server_metrics, self.allow_remote, "--server-metrics")
            ):
                raise OptionProblem("--server-metrics", problem.removeprefix("--server-metrics "))
        try:
            parse_mapping(self.server_metric)
        except ValueError as exc:
            raise OptionProblem("--server-metric", str(exc).removeprefix("--server-metric: ")) from None
        if self.baseline is not None:
            self._check_baseline(self.baseline)

    @staticmethod
    def _check_baseline(folder: Path) -> None:
        from comparison.baseline import baseline_problem

        if not (folder / "run.json").exists() and not (folder / "run.json").is_symlink():
            raise OptionProblem("--baseline", f"{str(folder)!r} is not a run folder (no run.json in it)")
        if problem := baseline_problem(folder):
            raise OptionProblem("--baseline", problem)

    def request(self) -> RequestSpec:
        return RequestSpec.build(
            self.method, self.path, parse_headers(list(self.headers)), self.body, self.body_file
        )

    def locust_args(self) -> list[str]:
        """What every Locust process is told, ahead of the passthrough."""
        args = ["--method", self.method, "--path", self.path]
        for header in self.headers:
            args += ["--header", header]
        if self.body:
            args += ["--body", self.body]
        if self.body_file:
            args += ["--body-file", self.body_file]
        if self.allow_remote:
            args.append("--allow-remote")
        for condition in self.abort_on:
            args += ["--abort-on", condition]
        if self.server_metrics:
            args += ["--server-metrics", self.server_metrics]
        for series in self.server_metric:
            args += ["--server-metric", series]
        return args  # no --abort-on for a remote host: the plugin applies its documented defaults


def _try(option: str, parse: object, value: object) -> None:
    try:
        parse(value)  # type: ignore[operator]
    except ValueError as exc:
        raise OptionProblem(option, str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser, number: object) -> None:
    """The runner's own flags for testing a service (number: the runner's strict number type)."""
    parser.add_argument("--path", help="path each request asks for (default /doWork)")
    parser.add_argument("--method", help=f"HTTP method of each request: {', '.join(METHODS)} (default GET)")
    parser.add_argument(
        "--header", action="append", default=[], help="'Name: value' every request carries; repeat for more"
    )
    parser.add_argument("--body", default="", help="request body text (at most 1 MiB)")
    parser.add_argument("--body-file", default="", help="send this file's bytes as the body (at most 1 MiB)")
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="load a --host that is not on this machine (also HAMMERLAB_ALLOW_REMOTE=1); stop-losses "
        "then default on (docs/own-service.md)",
    )
    parser.add_argument(
        "--max-probe-rps",
        type=number("max_probe_rps"),  # type: ignore[operator]
        default=DEFAULT_MAX_PROBE_RPS,
        help="ceiling of the ramping capacity probe for a service that is not Hammerlab's (default 500)",
    )
    parser.add_argument(
        "--abort-on",
        action="append",
        default=[],
        help="stop-loss, e.g. 'server_error_rate>20%% for 5s': stop the whole run (exit 3) when it held; "
        "repeat for more; 'none' for none",
    )
    parser.add_argument(
        "--check",
        action="append",
        default=[],
        help="gate on the summary, e.g. 'AdaptiveClient: slo_goodput_rps >= 0.9*capacity_rps' or "
        "'*: server_errors == 0'; a failed gate exits 1",
    )
    parser.add_argument("--junit", help="write every gate as a JUnit test case to this file")
    parser.add_argument("--baseline", help="a previous run folder whose curves report.html overlays")
    parser.add_argument(
        "--server-metrics",
        default="",
        metavar="URL",
        help="read the server columns from this Prometheus text endpoint (a URL, or a path on --host such "
        "as /metrics) instead of a Hammerlab target's /stats",
    )
    parser.add_argument(
        "--server-metric",
        action="append",
        default=[],
        metavar="COLUMN=SERIES",
        help="map a series onto a server column, e.g. in_flight=http_requests_in_flight or "
        "lag_ms=nodejs_eventloop_lag_seconds*1000; repeat for more (default: Hammerlab's names)",
    )


def lift_request(passthrough: Sequence[str]) -> tuple[dict[str, list[str]], tuple[str, ...]]:
    """The request and guard options given after `--` (exact flags or unambiguous abbreviations, as
    Locust reads them), flag -> values in order, and the passthrough without them: the runner passes
    them itself, once, ahead of the rest."""
    found: dict[str, list[str]] = {}
    rest: list[str] = []
    tokens = list(passthrough)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "--":
            rest += tokens[i:]
            break
        name, eq, value = token.partition("=")
        matches = [flag for flag in LIFTED_FLAGS if flag == name] or [
            flag for flag in LIFTED_FLAGS if flag.startswith(name)
        ]
        if not name.startswith("--") or len(name) <= 3 or len(matches) != 1:
            rest.append(token)
            i += 1
            continue
        flag = matches[0]
        if flag == "--allow-remote":
            found.setdefault(flag, []).append("true")
            i += 1
        elif eq:
            found.setdefault(flag, []).append(value)
            i += 1
        elif i + 1 < len(tokens):
            found.setdefault(flag, []).append(tokens[i + 1])
            i += 2
        else:
            rest.append(token)  # no value: Locust says so
            i += 1
    return found, tuple(rest)


def _resolved(folder: str) -> Path:
    """The absolute folder (results/latest moves to the new run as soon as it starts); a symlink loop
    stays as given, and the baseline check names it."""
    try:
        return Path(folder).resolve()
    except (OSError, RuntimeError):  # RuntimeError: Python 3.12's "Symlink loop"
        return Path(os.path.abspath(folder))


def from_args(args: argparse.Namespace, lifted: dict[str, list[str]]) -> ServiceOptions:
    """The runner's flags, then what the passthrough set (its last value wins; headers and
    conditions add)."""
    body_file = (lifted.get("--body-file") or [args.body_file])[-1]
    return ServiceOptions(
        method=(lifted.get("--method") or [args.method or "GET"])[-1],
        path=(lifted.get("--path") or [args.path or "/doWork"])[-1],
        headers=(*args.header, *lifted.get("--header", [])),
        body=(lifted.get("--body") or [args.body])[-1],
        body_file=os.path.abspath(body_file) if body_file else "",  # Locust runs from the repo root
        allow_remote=bool(args.allow_remote or lifted.get("--allow-remote")),
        max_probe_rps=args.max_probe_rps,
        abort_on=(*args.abort_on, *lifted.get("--abort-on", [])),
        checks=tuple(args.check),
        junit=Path(args.junit) if args.junit else None,
        # resolved now: results/latest moves to the new run as soon as it starts
        baseline=_resolved(args.baseline) if args.baseline else None,
        server_metrics=(lifted.get("--server-metrics") or [args.server_metrics])[-1],
        server_metric=(*args.server_metric, *lifted.get("--server-metric", [])),
    )
