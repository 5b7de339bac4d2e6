"""Checks on what the user typed that go beyond one number: the options after `--`, `--host`, the
results folder, the `--junit` file. Each returns or raises one readable line; none of them starts anything.

The options after `--` go to every Locust process, after the ones the runner sets itself. Locust's
argparse takes the last value and accepts any unambiguous abbreviation (`--run-tim 1s`) and glued short
forms (`-u5`, `-H<url>`), so a passthrough could silently replace the plan (issue 10, finding 8). Every
spelling that could reach a reserved option is refused, which also refuses the ambiguous abbreviations
Locust would reject anyway (`--h`). tests/test_bad_input_client.py checks this against Locust's parser.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

# Long options the runner sets for every Locust process, or that would change what the process is.
RESERVED_LONG = frozenset(
    {
        "--users", "--spawn-rate", "--run-time", "--host", "--csv", "--csv-full-history", "--html",
        "--json", "--json-file", "--locustfile", "--headless", "--headful", "--autostart", "--autoquit",
        "--launch-rate", "--processes", "--master", "--worker", "--class-picker", "--list",
        "--exit-code-on-error", "--config", "--config-users", "--web-host", "--web-port", "--version",
        "--help", "--only-summary", "--reset-stats", "--slo-ms", "--drain-s", "--stop-timeout",
        "--mix", "--master-bind-host", "--master-bind-port", "--master-port", "--expect-workers",
        "--expect-workers-max-wait",
    }
)  # fmt: skip
# Locust's one-letter forms of reserved options; -h, -l and -V are its only ones that take no value.
RESERVED_SHORT = frozenset({"-u", "-r", "-t", "-H", "-f", "-l", "-V", "-h", "-P", "-s"})
PATH_FLAG = "--path"
_NUMBER = re.compile(r"-[0-9.]")


def reserved_spelling(token: str) -> str | None:
    """The reserved option this token could set, e.g. '--run-tim=1s' -> '--run-time', '-u5' -> '-u'."""
    if token.startswith("--") and len(token) > 2:
        name = token.split("=", 1)[0]
        matches = sorted(option for option in RESERVED_LONG if option.startswith(name))
        if name in RESERVED_LONG:
            return name
        return matches[0] if matches else None
    if token.startswith("-") and len(token) > 1 and not _NUMBER.match(token):
        flag = token[:2]
        return flag if flag in RESERVED_SHORT else None
    return None


def reserved_options(tokens: Iterable[str]) -> list[tuple[str, str]]:
    """(token, reserved option) for every token that could set a reserved option, up to a bare `--`."""
    found = []
    for token in tokens:
        if token == "--":
            break
        option = reserved_spelling(token)
        if option:
            found.append((token, option))
    return found


def path_problem(text: str) -> str | None:
    """The same rule as the plugin's `--path` (locust_plugin/values.py; a test keeps them equal)."""
    if not text.startswith("/"):
        return "must start with /"
    if text.startswith("//"):
        return "must not start with // (that names another host)"
    if len(text) > 2000:
        return "is longer than 2000 characters"
    if any(not (" " < c < "\x7f") for c in text):
        return "must be printable ASCII without spaces (percent-encode the rest)"
    if "@" in text or "\\" in text:
        return "must not contain @ or \\ (they can name another host)"
    if "#" in text:
        return "must not contain # (a fragment is never sent)"
    return None


def paths_given(tokens: Sequence[str]) -> list[str]:
    """The values given to --path (or an abbreviation of it) among the tokens."""
    values = []
    for i, token in enumerate(tokens):
        if token == "--":
            break
        name, eq, value = token.partition("=")
        if len(name) > 3 and PATH_FLAG.startswith(name):
            if eq:
                values.append(value)
            elif i + 1 < len(tokens):
                values.append(tokens[i + 1])
    return values


def host_problem(url: str) -> str | None:
    """None for a well-formed http(s)://host[:port] URL with nothing after it, else what is wrong."""
    if any(not (" " < c < "\x7f") for c in url):
        return "must be printable ASCII without spaces"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        return f"is not a URL ({error})"
    if parts.scheme not in ("http", "https"):
        return "must be an http:// or https:// URL"
    if not parts.hostname:
        return "has no host name"
    if parts.username is not None or parts.password is not None:
        return "must not carry a user name or password"
    if parts.path not in ("", "/") or parts.query or parts.fragment or url.endswith(("?", "#")):
        return "must be scheme://host[:port] only (the path goes in --path after --)"
    if port == 0:
        return "has port 0"
    return None


def results_dir_problem(path: Path) -> str | None:
    """None when run folders can be created under `path` (it need not exist yet), else why not.
    Tries a throw-away folder in the nearest existing parent, so nothing is left behind."""
    existing = Path(os.path.abspath(path))
    while not existing.exists():
        if existing.parent == existing:
            return "has no existing parent folder"
        existing = existing.parent
    if not existing.is_dir():
        what = "is" if existing == Path(os.path.abspath(path)) else f"is inside {existing}, which is"
        return f"{what} not a folder"
    try:
        tempfile.TemporaryDirectory(dir=existing, prefix=".hammerlab-check-").cleanup()
    except OSError as error:
        return f"cannot be written ({error.strerror or type(error).__name__} in {existing})"
    return None


def output_file_problem(path: str) -> str | None:
    """None when a report can be written to `path` at the end of a run, else why not. Checked before the
    run, so a run of many minutes never ends in a traceback over its last file: the path must be a regular
    file or not exist yet, in an existing folder where a file can be created (a probe file is created and
    removed). A FIFO, /dev/full, a folder, /proc/x or a name with a NUL is one line."""
    if not path or "\x00" in path:
        return "is not a file path" + (" (it contains a NUL)" if path else "")
    file = Path(os.path.abspath(path))
    if any(Path(p).parts[1:2] in (("proc",), ("sys",), ("dev",)) for p in (file, os.path.realpath(file))):
        return "is under /proc, /sys or /dev, which hold no reports"
    try:
        mode = os.stat(file).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as error:
        return f"cannot be used ({error.strerror or type(error).__name__})"
    if mode is not None:
        if stat.S_ISDIR(mode):
            return "is a folder; name a file in it"
        if not stat.S_ISREG(mode):
            return "is not a regular file (a FIFO or device cannot hold a report)"
        return None if os.access(file, os.W_OK) else "cannot be written (permission denied)"
    if not file.parent.is_dir():
        return f"cannot be created: {file.parent} is not an existing folder"
    try:
        descriptor = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as error:
        return f"cannot be created ({error.strerror or type(error).__name__} in {file.parent})"
    os.close(descriptor)
    file.unlink()
    return None


MAX_RECORD_BYTES = 16 * 1024 * 1024  # a run.json is a few kB; a summary.csv a few hundred


class FileProblem(ValueError):
    """A file from an earlier run that cannot be read; the message is one line without the option."""


def read_small_file(path: Path, limit: int = MAX_RECORD_BYTES) -> bytes:
    """At most `limit` bytes of a regular file, opened without blocking and checked before reading, so a
    FIFO (which would wait forever), a device, a folder or a symlink loop is one line. Raises FileProblem."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise FileProblem(f"{str(path)!r} does not exist") from None
    except (OSError, ValueError) as error:  # ELOOP, EACCES; a NUL in the name
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise FileProblem(f"{str(path)!r} cannot be read ({reason})") from None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise FileProblem(f"{str(path)!r} is not a regular file")
    with os.fdopen(descriptor, "rb") as handle:
        try:
            data = handle.read(limit + 1)
        except OSError as error:
            raise FileProblem(f"{str(path)!r} cannot be read ({error.strerror or error})") from None
    if len(data) > limit:
        raise FileProblem(f"{str(path)!r} is larger than {limit:,} bytes")
    return data


def read_run_record(folder: Path) -> dict:
    """A run folder's run.json as an object. Raises FileProblem (one line)."""
    path = folder / "run.json"
    try:
        record = json.loads(read_small_file(path))
    except RecursionError:
        raise FileProblem(f"{path} is nested too deeply to be a run.json") from None
    except ValueError as error:
        if isinstance(error, FileProblem):
            raise
        raise FileProblem(f"{path} is not JSON ({str(error).splitlines()[0][:80]})") from None
    if not isinstance(record, dict):
        raise FileProblem(f"{path} is not a run record (a JSON object)")
    return record
