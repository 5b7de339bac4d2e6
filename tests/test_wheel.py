"""Done when (issue 21): the wheel, installed into a fresh venv outside the checkout, runs a user's own
locustfile from an empty folder: `hammerlab target`, `locust --headless` on the user's class, and
`hammerlab compare --locustfile ... --clients MyClient,ThrottledClient`.

Kept cheap: the wheel is built once without build isolation, and the fresh venv reuses the test venv's
already installed dependencies through a .pth file (no download); `pip install --no-index` still checks
that every pinned dependency is satisfied. Nothing from the checkout is on the venv's path.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import hammerlab
from hammerlab.shadow import PACKAGES

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ("requirements.txt", "requirements-dev.txt", "requirements-otel.txt")
SOURCES = ("pyproject.toml", "README.md", *REQUIREMENTS, *PACKAGES)
LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")

USER_LOCUSTFILE = '''\
"""A user's own locustfile: the lab's mitigations, this app's pipeline and request names."""

import itertools

from locust_plugin.users import MitigatedClient
from mitigations.core import Call


class MyClient(MitigatedClient):
    """My app's client: a breaker outside a throttle, with timeouts."""

    mitigations = ("breaker", "throttle", "timeout")

    def on_start(self) -> None:
        super().on_start()
        self._paths = itertools.cycle(["/doWork", "/ping"])

    def make_call(self, launched_at: float) -> Call:
        path = next(self._paths)
        return Call("GET", path, launched_at=launched_at, name="my-work" if path == "/doWork" else "my-ping")
'''


def build_and_install(tmp: Path) -> tuple[Path, dict[str, float]]:
    """The wheel built from a copy of the sources, installed into a fresh venv; (venv python, figures)."""
    source = tmp / "source"
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp / "dist", source],
                   check=True, timeout=120)  # fmt: skip
    (wheel,) = (tmp / "dist").glob("hammerlab-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=60)
    python = venv / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    shared = Path(sysconfig.get_paths()["purelib"]).resolve()
    (Path(purelib) / "_shared_dependencies.pth").write_text(f"{shared}\n")
    started = time.monotonic()
    subprocess.run([*pip, "--python", python, "install", "--no-index", wheel], check=True, timeout=120)
    figures = {"pip_install_s": time.monotonic() - started, "wheel_kib": wheel.stat().st_size / 1024}
    return python, figures


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Iterator[tuple[Path, Path, dict[str, float]]]:
    tmp = tmp_path_factory.mktemp("wheel")
    python, figures = build_and_install(tmp)
    empty = tmp / "project"
    empty.mkdir()
    yield python, empty, figures


def env_outside_the_checkout() -> dict[str, str]:
    drop = ("PYTHONPATH", "VIRTUAL_ENV")
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith(("TARGET_", "LOCUST_"))}


def run(argv: list, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env_outside_the_checkout(), capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def test_the_wheel_runs_a_users_own_locustfile_from_an_empty_folder(installed):
    python, folder, figures = installed
    bin_dir = python.parent
    assert not any(folder.iterdir())
    print(f"\nwheel {figures['wheel_kib']:.0f} KiB; pip install {figures['pip_install_s']:.1f} s")

    where = run([python, "-c", "import comparison, locustfiles; print(comparison.__file__)"], folder, 30)
    assert where.returncode == 0 and str(ROOT) not in where.stdout, where  # the wheel's, not the checkout's
    with zipfile.ZipFile(next(python.parent.parent.parent.glob("dist/*.whl"))) as wheel:
        names = set(wheel.namelist())
        metadata = wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert {"locust_plugin/static/hammerlab.js", "locustfiles/clients.py", "hammerlab/cli.py"} <= names
    # OpenTelemetry is an optional extra (docs/tracing.md), pinned, and the dev extra brings it for the tests.
    assert "Provides-Extra: otel" in metadata
    for extra in ("otel", "dev"):
        assert f'Requires-Dist: opentelemetry-sdk==1.45.2; extra == "{extra}"' in metadata
    assert not re.search(r"Requires-Dist: opentelemetry\S*==[^;]*$", metadata, re.M)  # never a plain one
    version = run([bin_dir / "hammerlab", "--version"], folder, 30)
    assert version.stdout == f"hammerlab {hammerlab.__version__}\n"

    (folder / "my_locustfile.py").write_text(USER_LOCUSTFILE)
    with open(folder / "target.log", "wb") as log:
        target = subprocess.Popen([bin_dir / "hammerlab", "target", "--port", "0", "--quiet"], cwd=folder,
                                  env=env_outside_the_checkout(), stdout=log, stderr=log)  # fmt: skip
    try:
        url = wait_for_target(folder / "target.log", target)

        # the user's class through Locust itself, with its own pipeline and request names
        headless = run([python, "-m", "locust", "-f", "my_locustfile.py", "--headless", "-u", "1", "-r", "1",
                        "-t", "3s", "--host", url, "--launch-rate", "20", "--drain-s", "1", "--csv", "mine",
                        "--only-summary", "MyClient"], folder, 90)  # fmt: skip
        assert headless.returncode == 0, headless.stderr[-2000:]
        rows = {row["Name"]: row for row in read_csv(folder / "mine_stats.csv")}
        assert min(int(rows[name]["Request Count"]) for name in ("my-work", "my-ping")) >= 5, rows
        clients = {row["client"] for row in read_csv(folder / "mine_mitigations.csv")}
        assert clients == {"MyClient"}

        # a class the files do not define: one line, exit 2, before any load
        unknown = run([bin_dir / "hammerlab", "compare", "--locustfile", "my_locustfile.py",
                       "--clients", "YourClient", "--host", url, "--capacity", "50"], folder, 60)  # fmt: skip
        assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1, unknown.stderr
        assert "'YourClient' is not a user class in locustfiles/ or my_locustfile.py" in unknown.stderr

        compared = run([bin_dir / "hammerlab", "compare", "--locustfile", "my_locustfile.py", "--clients",
                        "MyClient,ThrottledClient", "--duration", "5", "--drain-s", "1", "--host", url,
                        "--capacity", "60", "--rate-multiplier", "1"], folder, 150)  # fmt: skip
        assert compared.returncode == 0, compared.stderr[-2000:] + compared.stdout[-2000:]
    finally:
        target.send_signal(signal.SIGTERM)
        target.wait(timeout=15)
    summary = {row["client"]: row for row in read_csv(folder / "results" / "latest" / "summary.csv")}
    assert list(summary) == ["MyClient", "ThrottledClient"]
    for row in summary.values():
        assert float(row["offered_rps"]) == pytest.approx(60, rel=0.01)
        assert int(row["launched"]) > 100 and int(row["ok"]) > 20, row
    record = json.loads((folder / "results" / "latest" / "run.json").read_text())
    mine = (folder / "my_locustfile.py").resolve()
    assert record["reproduce"]["locustfile"]["path"] == str(mine)
    assert record["reproduce"]["versions"]["hammerlab"] == hammerlab.__version__

    (folder / "my_locustfile.py").write_text(USER_LOCUSTFILE + "\n# tuned after the run\n")
    rerun = run([bin_dir / "hammerlab", "compare", "--rerun", "results/latest"], folder, 30)
    assert rerun.returncode == 2 and "has changed since the run" in rerun.stderr, rerun.stderr
    assert rerun.stderr.count("\n") == 1


def wait_for_target(log: Path, process: subprocess.Popen[bytes], timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text(errors="replace")
        if match := LISTENING.search(log.read_text(errors="replace")):
            try:
                with urllib.request.urlopen(match.group(1) + "/ping", timeout=1):
                    return match.group(1)
            except OSError:
                pass
        time.sleep(0.05)
    raise AssertionError(f"hammerlab target did not answer in {timeout} s: {log.read_text(errors='replace')}")


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))
