"""`--mix 'NaiveRetryClient:1,AdaptiveClient:3'`: several client classes in one test, with fixed user counts.

Locust already runs several user classes at once (`locust ... NaiveRetryClient AdaptiveClient`) and
splits users by each class's `weight`, which has no command-line option. This sets each named class's
`fixed_count` instead (Locust's own mechanism: those users are spawned first, exactly that many), on the
process that dispatches users (the master, or the single local process), so the mix is the same whatever
`-u` rounding would do. `-u` must equal the sum. Each class keeps its own runtime, pipeline and ledger,
so the Mitigations rows and `PREFIX_mitigations.csv` already hold one row per class.
"""

from __future__ import annotations

import sys
from typing import Any

from locust import events
from locust.runners import WorkerRunner

from target_server.numbers import parse_int


def parse_mix(text: str) -> dict[str, int]:
    """`A:1,B:3` -> {"A": 1, "B": 3}. Raises ValueError with one line."""
    counts: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, raw = item.partition(":")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise ValueError(f"{item!r} is not CLASS:USERS, e.g. NaiveRetryClient:1,AdaptiveClient:3")
        try:
            users = parse_int(raw)  # ASCII digits only: no Arabic-Indic, full-width or 0_1
        except ValueError:
            raise ValueError(f"{item!r}: {raw.strip()!r} is not a whole number of users") from None
        if users < 1:
            raise ValueError(f"{item!r}: each class needs at least 1 user")
        if name in counts:
            raise ValueError(f"{name} is named twice")
        counts[name] = users
    if not counts:
        raise ValueError("name at least one CLASS:USERS")
    return counts


@events.init_command_line_parser.add_listener
def _add_option(parser: Any, **_: Any) -> None:
    parser.add_argument(
        "--mix",
        default="",
        help="run these user classes together with fixed user counts, e.g. "
        "'NaiveRetryClient:1,AdaptiveClient:3' (name the same classes at the end; -u must be the sum)",
    )


def _fail(problem: str) -> None:
    sys.stderr.write(f"hammerlab: error: --mix: {problem}\n")
    sys.exit(2)


@events.init.add_listener
def _apply(environment: Any, **_: Any) -> None:
    options = environment.parsed_options
    text = getattr(options, "mix", "") if options is not None else ""
    if not text or isinstance(environment.runner, WorkerRunner):
        return
    try:
        counts = parse_mix(text)
    except ValueError as error:
        _fail(str(error))
    classes = {user_class.__name__: user_class for user_class in environment.user_classes or ()}
    missing = [name for name in counts if name not in classes]
    if missing:
        _fail(f"{missing[0]} is not among the user classes of this run ({', '.join(classes)})")
    users = getattr(options, "num_users", None)
    if users is not None and users != sum(counts.values()):
        _fail(f"the counts add up to {sum(counts.values())} users but -u is {users}")
    for name, count in counts.items():
        classes[name].fixed_count = count
