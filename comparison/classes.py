"""The user classes Locust itself finds, and what every Locust process is told besides the plan.

`locust --list` answers which classes exist, with the user's options after `--`, so Locust's own parser
checks every value before anything starts.
"""

from __future__ import annotations

import subprocess

from comparison.config import ConfigError, RunConfig
from comparison.locust_run import LOCUST
from comparison.own_service import ServiceOptions
from comparison.run_record import RunFailed
from comparison.user_locustfile import UserLocustfile, locustfile_arg


def available_clients(
    passthrough: tuple[str, ...] = (), locustfile: UserLocustfile | None = None
) -> list[str]:
    """The user classes Locust itself finds in locustfiles/ and the user's --locustfile (`locust
    --list`), in its order. The options after `--` go along, so Locust's own parser checks every value
    before anything starts."""
    result = subprocess.run(
        [*LOCUST, "-f", locustfile_arg(locustfile), "--list", *passthrough],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        if result.returncode == 2 and passthrough:
            raise RunFailed(f"after --: {last.removeprefix('locust: error: ')}", usage=True)
        if locustfile is not None:  # the lab's own files load; the user's did not
            raise RunFailed(f"--locustfile: Locust cannot load {str(locustfile.path)!r}: {last}", usage=True)
        raise RunFailed(f"locust --list failed: {last}")
    return [line.strip() for line in result.stdout.splitlines()[1:] if line.startswith(" ")]


def locust_passthrough(config: RunConfig) -> tuple[str, ...]:
    """What every Locust process gets after the runner's own options: the request, the guard rails,
    then the user's passthrough."""
    return (*(config.service or ServiceOptions()).locust_args(), *config.passthrough)


def check_clients(config: RunConfig) -> None:
    known = available_clients(locust_passthrough(config), config.locustfile)
    where = "locustfiles/" + (f" or {config.locustfile.path.name}" if config.locustfile else "")
    for name in config.clients:
        if name not in known:
            known_list = ", ".join(known)
            raise ConfigError("--clients", f"{name!r} is not a user class in {where}; known: {known_list}")
