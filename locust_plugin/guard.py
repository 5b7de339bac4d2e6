"""The guard rails in Locust: loopback-only targets unless `--allow-remote`, and `--abort-on` stop-losses.

The rules are `mitigations.guard`'s. Here they are wired in where nothing has been sent yet:

- at start-up (`init`), every process checks the run's host and every user class's own host: a refused
  host ends a headless run with one line and exit code 2, before the first user or the server sampler
  exists; a web UI run refuses to start as well;
- the web UI's start (`POST /swarm`) checks the host of every class it would start, after the form's
  host and class choice (and whatever `POST /user` changed), and answers 400 with the line. The form
  never carries the opt-in: `allow_remote` in it is refused, since the opt-in comes only from this
  process's own command line or environment. While the UI listens on loopback, every route answers only
  a loopback Host (a DNS-rebinding page sends its own name);
- at every test start (`test_start`, on every route into a test) the same check runs again; a refused
  host stops the test (headless: exit code 2). The transports refuse the host by themselves too. On a
  Locust worker the host is the one its master sent, checked with the worker's own `--allow-remote`
  (`own_opt_in`: the master's options never carry it); a refused host makes the worker quit with exit
  code 2, so its master sees it leave rather than wait for users that never start;
- while a test runs, a watcher checks the stop-loss conditions twice a second against the answers of
  the last second (`events.request`, wire rows only) and the server sampler's latest lag. When one has
  held for its duration it logs the line, stops the test and, headless, quits with exit code 3.

Distributed runs: each process with users watches its own answers; the master sees the server lag.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import gevent
from locust import events
from locust.runners import MasterRunner, WorkerRunner

from locust_plugin import own_opt_in  # noqa: F401  (pins a worker's own --allow-remote at init)
from locust_plugin.monitoring import monitor_of
from locust_plugin.target import target_host
from mitigations.checked_url import is_loopback_host
from mitigations.core import ServerFailure
from mitigations.guard import (
    DEFAULT_REMOTE_ABORT_ON,
    STOP_LOSS_EXIT,
    RecentAnswers,
    StopLoss,
    is_local_url,
    is_loopback,
    parse_condition,
    parse_conditions,
    remote_problem,
)
from mitigations.request import METHODS

log = logging.getLogger("hammerlab")
ATTRIBUTE = "hammerlab_stop_loss"
CHECK_EVERY_S = 0.5
FRESH_SAMPLE_S = 3.0  # an older server sample says nothing about the lag now


def _condition(text: str) -> str:
    import argparse

    if text.strip().lower() != "none":
        try:
            parse_condition(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return text


@events.init_command_line_parser.add_listener
def _add_options(parser: Any, **_: Any) -> None:
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        default=False,
        help="load a host that is not on this machine (also HAMMERLAB_ALLOW_REMOTE=1); by default only "
        "loopback hosts may be loaded. Never settable from the web UI",
        include_in_web_ui=False,
    )
    parser.add_argument(
        "--abort-on",
        action="append",
        type=_condition,
        metavar="'METRIC>VALUE for Ns'",
        help="stop the whole test (exit code 3) when the condition held that long: server_error_rate>20%% "
        "for 5s, p99>5s for 10s, server_lag_ms>1000 for 5s; repeat for more; 'none' for none. Default: "
        f"none on loopback, else {'; '.join(DEFAULT_REMOTE_ABORT_ON).replace('%', '%%')}",
    )


def host_problem(environment: Any, host: str | None = None, classes: Any = None) -> str | None:
    """The first refused host among the run's host (`host`, else the environment's) and every class's own
    host, as each class would be started: the run's host when there is one, else the class's."""
    run_host = (environment.host or "") if host is None else host
    urls = [run_host] + [
        run_host or getattr(c, "host", None) or "" for c in classes or environment.user_classes or ()
    ]
    allow = bool(getattr(environment.parsed_options, "allow_remote", False))
    for url in dict.fromkeys(str(u).rstrip("/") for u in urls if u):
        if not url.lower().startswith(("http://", "https://")):
            continue  # not a URL anything could load: the option checks refuse it with their own line
        problem = remote_problem(url, allow)
        if problem:
            return problem
    return None


def _started_classes(environment: Any, form: Any) -> list[Any]:
    """The classes a `POST /swarm` with this form would start (Locust's class picker rules)."""
    picked = form.getlist("user_classes")
    available = getattr(environment, "available_user_classes", None) or {}
    if picked and available and getattr(environment.parsed_options, "class_picker", False):
        return [cls for name, cls in available.items() if name in picked]
    if not environment.user_classes and available:
        return list(available.values())
    return list(environment.user_classes or ())


def _ui_on_loopback(environment: Any) -> bool:
    bound = str(getattr(environment.web_ui, "host", "") or "")
    return bound in ("localhost", "localhost.") or is_loopback(bound)


@events.init.add_listener
def _refuse_remote_at_start_up(environment: Any, **_: Any) -> None:
    if environment.parsed_options is None:
        return
    problem = host_problem(environment)
    try:
        parse_conditions(getattr(environment.parsed_options, "abort_on", None), remote=True)
    except ValueError as exc:
        problem = problem or f"--abort-on: {exc}"
    if problem:
        sys.stderr.write(f"hammerlab: error: {problem}\n")
        sys.exit(2)
    if environment.web_ui is not None:
        _guard_the_web_ui(environment)


def _guard_the_web_ui(environment: Any) -> None:
    from flask import jsonify, request

    base = (getattr(environment.parsed_options, "web_base_path", "") or "").rstrip("/")
    on_loopback = _ui_on_loopback(environment)

    @environment.web_ui.app.before_request
    def _refuse_foreign_host_and_remote_targets() -> Any:
        host_header = request.headers.get("Host")
        if on_loopback and not is_loopback_host(host_header):
            line = f"this web UI listens on loopback and answers only a loopback Host, not {host_header!r}"
            return jsonify(success=False, message=line, error=line), 403
        if request.method == "POST" and request.path == f"{base}/swarm":
            if "allow_remote" in request.form:
                line = (
                    "allow_remote: the opt-in to load off this machine comes only from the command line "
                    "(--allow-remote) or the environment (HAMMERLAB_ALLOW_REMOTE=1) of the locust process"
                )
                return jsonify(success=False, message=line, host=environment.host), 400
            host = request.form["host"].replace("<", "").replace(">", "") if "host" in request.form else None
            problem = host_problem(environment, host, _started_classes(environment, request.form))
            if problem:
                return jsonify(success=False, message=problem, host=environment.host), 400
        return None


@events.test_start.add_listener
def _check_hosts_at_test_start(environment: Any, **_: Any) -> None:
    """The last gate before users spawn, whatever route started the test."""
    if environment.parsed_options is None or environment.runner is None:
        return
    problem = host_problem(environment)
    if problem is None:
        return
    log.error("hammerlab: error: %s", problem)
    worker = isinstance(environment.runner, WorkerRunner)
    if worker or getattr(environment.parsed_options, "headless", False):
        environment.process_exit_code = 2
        gevent.spawn(environment.runner.quit)
    else:
        gevent.spawn(environment.runner.stop)


class Watch:
    """One test's stop-loss: its conditions, the answers of the last second, the greenlet that checks."""

    def __init__(self, environment: Any) -> None:
        self.environment = environment
        remote = not is_local_url(target_host(environment) or "http://127.0.0.1")
        self.stop_loss = StopLoss(
            parse_conditions(getattr(environment.parsed_options, "abort_on", None), remote)
        )
        self.answers = RecentAnswers()
        self.greenlet: gevent.Greenlet | None = None
        self.listening = False

    def on_request(self, request_type: str, response_time: float, exception: Any = None, **_: Any) -> None:
        if request_type in METHODS:  # answers on the wire, first attempts and retries; never shed rows
            failed = isinstance(exception, ServerFailure) and exception.counts_against_server
            self.answers.add(time.monotonic(), float(response_time or 0.0), failed)

    def values(self) -> dict[str, float | None]:
        values = self.answers.values(time.monotonic())
        monitor = monitor_of(self.environment)
        latest = monitor.sampler.latest if monitor is not None else None
        fresh = latest is not None and time.time() - latest.timestamp <= FRESH_SAMPLE_S
        values["server_lag_ms"] = latest.lag_ms if fresh else None  # type: ignore[union-attr]
        return values

    def run(self) -> None:
        while True:
            gevent.sleep(CHECK_EVERY_S)
            if self.stop_loss.feed(time.monotonic(), self.values()):
                self.trip()
                return

    def trip(self) -> None:
        line = self.stop_loss.message()
        log.error("hammerlab: %s", line)
        runner = self.environment.runner
        if getattr(self.environment.parsed_options, "headless", False):
            self.environment.process_exit_code = STOP_LOSS_EXIT
            gevent.spawn(runner.quit)
        else:
            gevent.spawn(runner.stop)


@events.test_start.add_listener
def _watch(environment: Any, **_: Any) -> None:
    if environment.parsed_options is None or environment.runner is None:
        return
    _stop_watching(environment)
    watch = Watch(environment)
    setattr(environment, ATTRIBUTE, watch)
    if not watch.stop_loss.conditions:
        return
    if not isinstance(environment.runner, MasterRunner):
        environment.events.request.add_listener(watch.on_request)
        watch.listening = True
    watch.greenlet = gevent.spawn(watch.run)


@events.test_stop.add_listener
def _stop_watching(environment: Any, **_: Any) -> None:
    watch: Watch | None = getattr(environment, ATTRIBUTE, None)
    if watch is None:
        return
    if watch.greenlet is not None:
        watch.greenlet.kill(block=False)
    if watch.listening:
        environment.events.request.remove_listener(watch.on_request)
    setattr(environment, ATTRIBUTE, None)
