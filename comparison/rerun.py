"""Reproducible runs: what run.json keeps to repeat a run, and `--rerun results/<run>` that repeats it.

`reproduction()` is run.json's `reproduce` object: the exact argv (every comparison option and every
Locust or mitigation option after `--`), the options as the runner understood them, the request (with
a SHA-256 of the body), the target (its effective config when it is Hammerlab's, its Server header
otherwise), the versions of everything that shapes the numbers, the machine, the random seeds and the
project's git commit ("not a git checkout" outside one). `rerun_argv()` turns a run folder back into
an argv whose results go into a new folder beside the old one.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from comparison import ROOT
from comparison.config import RunConfig
from comparison.inputs import FileProblem, read_run_record

VERSIONED = (
    "hammerlab",
    "locust",
    "gevent",
    "geventhttpclient",
    "requests",
    "urllib3",
    "flask",
    "hdrhistogram",
    "matplotlib",
)
RERUN_FLAGS = ("--rerun", "--results-dir", "--baseline")
ALLOW_REMOTE_FLAG = "--allow-remote"
NOT_GIT = "not a git checkout"


class RerunError(ValueError):
    """The folder cannot be rerun; one line."""


def git_commit(root: Path = ROOT) -> dict[str, Any]:
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": NOT_GIT, "dirty": None}
    return {"commit": head or NOT_GIT, "dirty": bool(dirty)}


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def reproduction(config: RunConfig, argv: list[str], kind: Any = None) -> dict[str, Any]:
    """run.json's `reproduce` object (see the module doc)."""
    options = {k: v for k, v in asdict(config).items() if k != "service"}
    service = config.service
    request: dict[str, Any] = {}
    if service is not None:
        options["service"] = {k: v for k, v in asdict(service).items() if k != "gates"}
        spec = service.request()
        request = {
            "method": spec.method,
            "path": spec.path,
            "headers": [f"{name}: {value}" for name, value in spec.headers],
            "body_bytes": len(spec.body or b""),
            "body_sha256": hashlib.sha256(spec.body).hexdigest() if spec.body else None,
        }
    if kind is None:
        target = {"kind": "embedded", "command": "python -m target_server --host 127.0.0.1 --port 0 --quiet"}
    elif kind.hammerlab:
        target = {"kind": "hammerlab", "url": config.host, "config": kind.config}
    else:
        target = {"kind": "other", "url": config.host, "status": kind.status, "server": kind.server}
    seed = os.environ.get("TARGET_SEED")
    return _plain(
        {
            "argv": list(argv[1:]),
            "cwd": os.getcwd(),
            "options": options,
            "request": request,
            "locustfile": config.locustfile.record() if config.locustfile else None,
            "target": target,
            "versions": versions(),
            "git": git_commit(),
            "seeds": {
                "target": int(seed) if seed and seed.isdigit() else None,
                "clients": "unseeded: jitter and the SRE throttle's draws use Python's random, so a rerun "
                "differs in those draws",
            },
            "env": {
                k: v for k, v in os.environ.items() if k.startswith(("HAMMERLAB_", "TARGET_", "LOCUST_"))
            },
        }
    )


def recorded_argv(folder: Path) -> list[str]:
    """run.json's reproduce.argv: a list of strings without NUL. Raises RerunError (one line)."""
    path = folder / "run.json"
    if not path.exists() and not path.is_symlink():
        raise RerunError(f"--rerun: {str(folder)!r} is not a run folder (no run.json in it)")
    try:
        record = read_run_record(folder)
    except FileProblem as problem:
        raise RerunError(f"--rerun: {problem}") from None
    reproduce = record.get("reproduce")
    argv = reproduce.get("argv") if isinstance(reproduce, dict) else None
    if argv is None:
        raise RerunError(f"--rerun: {path} has no reproduce.argv (a run from before --rerun existed)")
    if not isinstance(argv, list) or not all(isinstance(t, str) and "\x00" not in t for t in argv):
        raise RerunError(f"--rerun: {path}'s reproduce.argv is not a list of strings")
    return list(argv)


def recorded_locustfile(folder: Path) -> dict[str, str] | None:
    """run.json's reproduce.locustfile ({path, sha256}, from --locustfile), or None when the run had none.
    Call after recorded_argv, which has checked the file. Raises RerunError (one line)."""
    try:
        reproduce = read_run_record(folder).get("reproduce")
    except FileProblem as problem:
        raise RerunError(f"--rerun: {problem}") from None
    recorded = reproduce.get("locustfile") if isinstance(reproduce, dict) else None
    if recorded is None:
        return None
    fields = ("path", "sha256")
    if not isinstance(recorded, dict) or not all(isinstance(recorded.get(k), str) for k in fields):
        raise RerunError(f"--rerun: {folder / 'run.json'}'s reproduce.locustfile is not a path and a sha256")
    return {"path": recorded["path"], "sha256": recorded["sha256"]}


def rerun_argv(folder: Path, baseline: Path | None = None, allow_remote: bool = False) -> list[str]:
    """The argv that repeats the run in `folder`, writing into `folder`'s parent, overlaying `baseline`
    in its report when given (the recorded run's own --baseline is dropped). A stored --allow-remote is
    dropped: the opt-in to load off this machine comes only from the user now (`allow_remote`, typed
    with --rerun, or HAMMERLAB_ALLOW_REMOTE=1), never from a folder. Raises RerunError."""
    argv = [token for token in recorded_argv(folder) if not _is_allow_remote(token)]
    recorded = recorded_locustfile(folder)
    if recorded is not None:
        from comparison.user_locustfile import changed_since

        if problem := changed_since(recorded):
            raise RerunError(f"--rerun: {folder} cannot be repeated: {problem}")
    cut = argv.index("--") if "--" in argv else len(argv)
    own, rest = argv[:cut], argv[cut:]
    kept: list[str] = []
    skip = False
    for token in own:
        if skip:
            skip = False
            continue
        name = token.split("=", 1)[0]
        if name in RERUN_FLAGS:
            skip = "=" not in token
            continue
        if name == "--locustfile" and recorded is not None:  # the checked file, from any folder
            skip = "=" not in token
            kept += ["--locustfile", recorded["path"]]
            continue
        kept.append(token)
    overlay = ["--baseline", str(baseline)] if baseline is not None else []
    opt_in = ["--allow-remote"] if allow_remote else []
    return [*kept, *opt_in, "--results-dir", str(folder.resolve().parent), *overlay, *rest]


def _is_allow_remote(token: object) -> bool:
    """--allow-remote, or an abbreviation argparse would take for it (--allow-r)."""
    name = str(token).split("=", 1)[0]
    return len(name) >= len("--allow") and ALLOW_REMOTE_FLAG.startswith(name)
