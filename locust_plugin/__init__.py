"""The Locust side of Hammerlab: options, base users, the per-class runtime and the stats reporter.

Importing this package registers its listeners on Locust's global events (that is how Locust plugins
work): the command-line options, start-up validation, a fresh pipeline for every test, the live views
(`monitoring`), complete CSV files at exit (`final_csv`), in a distributed run the workers' reports
after their drain (`final_reports`), and several classes with fixed user counts (`mix`). At test stop
every `Defer` queue is closed: what is still queued stays on disk for the next run of its class.
"""

from __future__ import annotations

import logging
import signal
import sys
from typing import Any

import gevent
from locust import events
from locust.runners import MasterRunner

from locust_plugin import (  # noqa: F401  (all but options register listeners)
    final_csv,
    final_reports,
    guard,
    mix,
    monitoring,
    options,
)
from locust_plugin.pipelines import build_pipeline
from locust_plugin.runtime import drain_runtimes, reset_runtimes, runtimes
from mitigations.core import SYSTEM_CLOCK
from mitigations.defer import Defer

log = logging.getLogger("hammerlab")


def check_settings(environment: Any) -> str | None:
    """Check every option's range, then build every selected client's pipeline once, without sending
    anything. Returns the error line. Runs at start-up and again at every test start, because the web
    UI may have changed the values in between."""
    for option in options.OPTIONS:
        try:
            options.read(environment.parsed_options, option.dest)
        except ValueError as exc:
            return str(exc)
    try:
        options.request_spec(environment.parsed_options)
    except ValueError as exc:
        return str(exc)
    for user_class in environment.user_classes or ():
        mitigations = getattr(user_class, "mitigations", None)
        if mitigations is None:
            continue
        try:
            built = build_pipeline(
                mitigations,
                environment.parsed_options,
                user_class.host or environment.host or "",
                SYSTEM_CLOCK,
            )
            close = getattr(built.pipeline.transport, "close", None)
            if close:
                close()
            for policy in built.policies.values():
                if isinstance(policy, Defer):  # an unusable --defer-dir: refused before any load
                    policy.check(user_class.__name__)
        except ValueError as exc:
            return f"{user_class.__name__}: {exc}"
    return None


@events.init_command_line_parser.add_listener
def _add_options(parser: Any, **_: Any) -> None:
    options.add_arguments(parser)


@events.init.add_listener
def _check_at_start_up(environment: Any, **_: Any) -> None:
    if environment.parsed_options is None or isinstance(environment.runner, MasterRunner):
        return
    problem = check_settings(environment)
    if problem and environment.parsed_options.headless:
        sys.stderr.write(f"hammerlab: error: {problem}\n")
        sys.exit(2)
    if problem:
        log.error("hammerlab: %s (fix it in the web UI before starting)", problem)


@events.init.add_listener
def _honour_ctrl_c(environment: Any, **_: Any) -> None:
    """Ctrl-C (SIGINT) ends the run however Locust was started. Python installs its KeyboardInterrupt
    handler only when SIGINT is not ignored at start-up, and a shell ignores it for background jobs
    (`locust ... &` in a script): such a run would go on to its -t, or forever. This handler stops it the
    way Ctrl-C does in a terminal: KeyboardInterrupt in the main greenlet, which Locust catches."""
    if environment.parsed_options is None or not _owns_sigint():
        return
    main = gevent.get_hub().parent
    gevent.signal_handler(signal.SIGINT, lambda: main.throw(KeyboardInterrupt))


def _owns_sigint() -> bool:
    """True unless someone other than Python's default (or nobody) handles SIGINT already (Locust's
    --processes parent, an embedding program)."""
    return signal.getsignal(signal.SIGINT) in (signal.default_int_handler, signal.SIG_IGN, signal.SIG_DFL)


@events.test_stopping.add_listener
def _drain(environment: Any, **_: Any) -> None:
    drain_runtimes(environment)


@events.test_start.add_listener
def _fresh_pipelines(environment: Any, **_: Any) -> None:
    reset_runtimes(environment)
    if environment.runner is None or isinstance(environment.runner, MasterRunner):
        return
    problem = check_settings(environment)
    if problem:
        log.error("hammerlab: error: %s; stopping the test", problem)
        gevent.spawn_later(0, environment.runner.stop)


@events.test_stop.add_listener
def _close_defer_queues(environment: Any, **_: Any) -> None:
    for runtime in runtimes(environment).values():
        for policy in runtime.policies.values():
            if isinstance(policy, Defer):
                policy.close()
