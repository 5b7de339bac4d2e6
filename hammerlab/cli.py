"""`hammerlab`: one installed command whose subcommands wrap what exists.

    hammerlab demo                 the comparison `make demo` runs (cliff scenario, 15 s per class)
    hammerlab compare [...]        = python -m comparison [...]
    hammerlab target [...]         = python -m target_server [...]
    hammerlab options              every client option with its range and default, by mitigation
    hammerlab --version

Each subcommand hands its arguments to the module's own `main`, so the options, checks, messages and
exit codes are the `python -m` forms' (those stay). Locust stays the runner: `locust -f ...` is unchanged.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from hammerlab import __version__

PROG = "hammerlab"
DEMO_ARGS = ("--scenario", "cliff", "--duration", "15")
USAGE = f"""usage: {PROG} COMMAND [ARGS]   ({PROG} COMMAND --help for a command's own options)

commands:
  demo       measure the target's capacity C, offer 2 x C to each default client, print the table
             (= {PROG} compare {" ".join(DEMO_ARGS)})
  compare    run client classes side by side against one scenario (= python -m comparison);
             --locustfile my_locustfile.py --clients MyClient,ThrottledClient adds your own classes
  target     run the target server (= python -m target_server)
  options    list every client option (--max-concurrent, --breaker-mode, ...) with range and default;
             `locust --help` cannot show them
  --version  print the version"""


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def _shadow_problem() -> str | None:
    """The compare subcommand's Locust processes import the lab from here: refuse a shadowing folder."""
    import comparison
    from hammerlab.shadow import shadowing

    return shadowing(Path.cwd(), Path(comparison.__file__).resolve().parent.parent)


def compare(args: Sequence[str]) -> int:
    if problem := _shadow_problem():
        return _fail(problem)
    from comparison.__main__ import main as comparison_main

    return comparison_main(list(args))


def demo(args: Sequence[str]) -> int:
    if args:
        return _fail(f"demo takes no arguments (got {args[0]!r}); use `{PROG} compare ...` to choose")
    return compare(DEMO_ARGS)


def target(args: Sequence[str]) -> int:
    from target_server.__main__ import main as target_main

    return target_main(list(args))


def options(args: Sequence[str]) -> int:
    if args and args[0] in ("-h", "--help"):
        print(f"usage: {PROG} options\n\nList every Hammerlab client option, its range and default.")
        return 0
    if args:
        return _fail(f"options takes no arguments (got {args[0]!r})")
    from hammerlab.options_list import render

    print(render())
    return 0


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "demo": demo,
    "compare": compare,
    "target": target,
    "options": options,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        return _fail(f"name a command: {', '.join(COMMANDS)} (or --help, --version)")
    if argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if argv[0] == "--version":
        if len(argv) > 1:
            return _fail(f"--version takes no arguments (got {argv[1]!r})")
        print(f"{PROG} {__version__}")
        return 0
    command = COMMANDS.get(argv[0])
    if command is None:
        what = "an option" if argv[0].startswith("-") else "a command"
        shown = argv[0] if len(argv[0]) <= 40 else argv[0][:38] + "…"
        return _fail(f"{shown!r} is not {what}; choose from {', '.join(COMMANDS)} or --version")
    try:
        return command(argv[1:])
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `hammerlab options | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
