"""The user classes Locust itself finds, and what every Locust process is told besides the plan.

`locust --list` answers which classes exist, with the user's options after `--`, so Locust's own parser
checks every value before anything starts.
"""

from __future__ import annotations

import subprocess

from comparison import ROOT
from comparison.config import ConfigError, RunConfig
from comparison.locust_run import LOCUST
from comparison.own_service import ServiceOptions
from comparison.run_record import RunFailed


def available_clients(passthrough: tuple[str, ...] = ()) -> list[str]:
    """The user classes Locust itself finds in locustfiles/ (`locust --list`), in its order. The
    options after `--` go along, so Locust's own parser checks every value before anything starts."""
    result = subprocess.run(
        [str(LOCUST), "-f", "locustfiles", "--list", *passthrough],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        if result.returncode == 2 and passthrough:
            raise RunFailed(f"after --: {last.removeprefix('locust: error: ')}", usage=True)
        raise RunFailed(f"locust --list failed: {last}")
    return [line.strip() for line in result.stdout.splitlines()[1:] if line.startswith(" ")]


def locust_passthrough(config: RunConfig) -> tuple[str, ...]:
    """What every Locust process gets after the runner's own options: the request, the guard rails,
    then the user's passthrough."""
    return (*(config.service or ServiceOptions()).locust_args(), *config.passthrough)


def check_clients(config: RunConfig) -> None:
    known = available_clients(locust_passthrough(config))
    for name in config.clients:
        if name not in known:
            raise ConfigError(
                "--clients", f"{name!r} is not a user class in locustfiles/; known: {', '.join(known)}"
            )
