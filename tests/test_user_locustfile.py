"""`--locustfile`: a bad path is one line before anything starts; the file rides along on every Locust
command line by absolute path; run.json keeps its sha256 and `--rerun` refuses a changed file."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from comparison import ROOT
from comparison.__main__ import parse_config
from comparison.config import ConfigError, RunConfig, build_plan
from comparison.locust_run import locust_command
from comparison.readers import ClassFiles
from comparison.rerun import RerunError, reproduction, rerun_argv
from comparison.user_locustfile import UserLocustfile

USER_FILE = "from locust_plugin.users import MitigatedClient\n\nclass MyClient(MitigatedClient):\n    pass\n"


@pytest.fixture
def user_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_locustfile.py"
    path.write_text(USER_FILE)
    return path


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda d: str(d / "missing.py"), "missing.py' does not exist"),
        (lambda d: str(d), "is a folder; give one .py file"),
        (lambda d: (d / "a.txt").write_text("x") and str(d / "a.txt"), "a.txt' is not a .py file"),
        (lambda d: "", "'' is not a path to a .py file"),
        (lambda d: os.mkfifo(d / "pipe.py") or str(d / "pipe.py"), "pipe.py' is not a regular file"),
    ],
)
def test_a_bad_locustfile_is_one_line_naming_the_value(tmp_path, make, fragment):
    with pytest.raises(ConfigError) as caught:
        parse_config(["--locustfile", make(tmp_path), "--duration", "5"])
    message = str(caught.value)
    assert message.startswith("--locustfile: ") and fragment in message and "\n" not in message


def test_the_file_is_checked_hashed_and_given_to_locust_by_absolute_path(user_file, monkeypatch):
    monkeypatch.chdir(user_file.parent)
    config = parse_config(["--locustfile", user_file.name, "--clients", "MyClient,ThrottledClient"])
    digest = hashlib.sha256(user_file.read_bytes()).hexdigest()
    assert config.locustfile == UserLocustfile(user_file.resolve(), digest)
    plan = build_plan(RunConfig(duration_s=10), 80)
    files = ClassFiles(user_file.parent / "x")
    command, _ = locust_command("MyClient", files, "http://127.0.0.1:9", plan, (), config.locustfile)
    assert command[command.index("-f") + 1] == f"{ROOT / 'locustfiles'},{user_file.resolve()}"
    record = reproduction(config, ["prog", "--locustfile", user_file.name])
    assert record["locustfile"] == {"path": str(user_file.resolve()), "sha256": config.locustfile.sha256}


def write_run(folder: Path, user_file: Path, argv: list[str]) -> None:
    folder.mkdir()
    config = parse_config(argv)
    record = {"reproduce": reproduction(config, ["prog", *argv])}
    (folder / "run.json").write_text(json.dumps(record))


def test_rerun_repeats_with_the_recorded_file_and_refuses_a_changed_one(user_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "results" / "cliff-1"
    run.parent.mkdir()
    argv = ["--locustfile", user_file.name, "--clients", "MyClient", "--", "--keep-alive", "true"]
    write_run(run, user_file, argv)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # a rerun from another folder still names the same file
    argv = rerun_argv(run)
    assert argv[argv.index("--locustfile") + 1] == str(user_file.resolve())
    assert argv[-3:] == ["--", "--keep-alive", "true"]
    user_file.write_text(USER_FILE + "# one more line\n")
    with pytest.raises(RerunError) as caught:
        rerun_argv(run)
    message = str(caught.value)
    assert "has changed since the run" in message and str(user_file.resolve()) in message
    assert "\n" not in message
    user_file.unlink()
    with pytest.raises(RerunError, match="cannot be read now"):
        rerun_argv(run)
