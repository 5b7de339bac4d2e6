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


def rerun_argv(folder: Path, baseline: Path | None = None) -> list[str]:
    """The argv that repeats the run in `folder`, writing into `folder`'s parent, overlaying `baseline`
    in its report when given (the recorded run's own --baseline is dropped). Raises RerunError."""
    argv = recorded_argv(folder)
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
        kept.append(token)
    overlay = ["--baseline", str(baseline)] if baseline is not None else []
    return [*kept, "--results-dir", str(folder.resolve().parent), *overlay, *rest]
