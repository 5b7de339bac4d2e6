"""The `hammerlab` command and the package metadata: one version, pinned dependencies, every client
option listed, one line and exit 2 for a bad command, and no folder that shadows the lab's packages."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

import hammerlab
from hammerlab.cli import main
from hammerlab.options_list import GROUP_STARTS, RUN_GROUP, groups, render
from hammerlab.shadow import PACKAGES, shadowing
from locust_plugin.options import OPTIONS

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def one_line_exit_2(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err, captured.err
    return captured.err


def test_options_lists_every_flag_locust_gets():
    """Every flag the plugin registers on Locust's real parser is in `hammerlab options`, with a range and
    a default; the two cannot drift apart. (`render` imports the plugin, which registers them.)"""
    text = render()
    from locust.argument_parser import get_empty_argument_parser, get_parser, setup_parser_arguments

    locusts_own = get_empty_argument_parser()
    setup_parser_arguments(locusts_own)
    own = {flag for action in locusts_own._actions for flag in action.option_strings}
    plugin_flags = {flag for action in get_parser()._actions for flag in action.option_strings} - own
    assert {option.flag for option in OPTIONS} <= plugin_flags
    assert {"--header", "--abort-on", "--allow-remote", "--mix"} <= plugin_flags
    shown = set(re.findall(r"^  (--[a-z0-9-]+)\s", text, re.M))
    assert plugin_flags <= shown, plugin_flags - shown
    assert len(shown) == len(re.findall(r"^  --", text, re.M))  # each once
    assert text.count("range: ") == len(shown) and text.count("; default: ") == len(shown)


def test_groups_follow_the_options_table():
    flags = [option.flag for option in OPTIONS]
    starts = list(GROUP_STARTS)
    assert all(flag in flags for flag in starts), [f for f in starts if f not in flags]
    assert starts == sorted(starts, key=flags.index) and starts[0] == flags[0]
    titles = [title for title, _ in groups()]
    assert titles == [*GROUP_STARTS.values(), RUN_GROUP]
    listed = {item.flag: title for title, items in groups() for item in items}
    assert listed["--max-concurrent"].startswith("throttle")
    assert listed["--retry-budget"].startswith("retries")
    assert listed["--header"] == GROUP_STARTS["--launch-rate"]
    by_flag = {item.flag: item for _, items in groups() for item in items}
    assert by_flag["--breaker-mode"].allowed == "recent-error or rate"
    assert by_flag["--max-sockets"].allowed == "1 to 10,000" and by_flag["--max-sockets"].default == "16"
    assert by_flag["--keep-alive"].allowed == "true or false"
    assert by_flag["--allow-remote"].allowed == "a switch, no value"
    assert by_flag["--abort-on"].allowed.startswith("repeatable, ")


def test_version_lives_in_one_place(capsys):
    assert "version" not in PYPROJECT["project"] and "version" in PYPROJECT["project"]["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "hammerlab.__version__"}
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"hammerlab {hammerlab.__version__}\n"


def test_dependencies_are_pinned_and_the_packages_are_the_layouts():
    for name in ("requirements.txt", "requirements-dev.txt"):
        lines = [line for line in (ROOT / name).read_text().splitlines() if line and not line.startswith("#")]
        pinned = re.compile(r"[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.]*")
        assert lines and all(pinned.fullmatch(line) for line in lines), name
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {name.removesuffix("*") for name in include} == set(PACKAGES)
    # every folder of code under the layout's names ships, subpackages too (comparison.scenarios once did
    # not); pyproject's find looks for namespace packages too, so locustfiles/ needs no __init__.py
    from setuptools import find_namespace_packages

    on_disk = {
        ".".join(source.parent.relative_to(ROOT).parts)
        for top in PACKAGES
        for source in (ROOT / top).rglob("*.py")
    }
    assert on_disk <= set(find_namespace_packages(str(ROOT), include=include))
    assert PYPROJECT["project"]["scripts"] == {"hammerlab": "hammerlab.cli:main"}


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        ([], "name a command"),
        (["bogus"], "'bogus' is not a command; choose from demo, compare, target, options"),
        (["--bogus"], "'--bogus' is not an option"),
        (["--version", "x"], "--version takes no arguments"),
        (["options", "--all"], "options takes no arguments"),
        (["demo", "--duration", "5"], "demo takes no arguments"),
        (["x" * 500], "is not a command"),
    ],
)
def test_a_bad_command_is_one_line_and_exit_2(capsys, argv, fragment):
    assert fragment in one_line_exit_2(capsys, argv)


def test_subcommands_hand_their_arguments_to_the_python_m_forms(capsys):
    err = one_line_exit_2(capsys, ["target", "--port", "99999"])
    assert err.startswith("target_server: error:") and "--port" in err
    err = one_line_exit_2(capsys, ["compare", "--duration", "2"])
    assert err.startswith("python -m comparison: error: --duration")


def test_a_folder_that_would_shadow_a_package_is_named(tmp_path):
    assert shadowing(ROOT, ROOT) is None  # a checkout is not a shadow of itself
    (tmp_path / "comparison").mkdir()  # e.g. a folder of results: no __init__.py, imports nothing
    assert shadowing(tmp_path, ROOT) is None
    (tmp_path / "mitigations.py").write_text("")
    problem = str(shadowing(tmp_path, ROOT))
    assert "mitigations.py' would shadow Hammerlab's own mitigations package" in problem
    (tmp_path / "mitigations.py").unlink()
    (tmp_path / "comparison" / "__init__.py").write_text("")
    assert "would shadow Hammerlab's own comparison package" in str(shadowing(tmp_path, ROOT))


def test_compare_refuses_to_run_from_a_shadowing_folder(capsys, tmp_path, monkeypatch):
    (tmp_path / "target_server").mkdir()
    (tmp_path / "target_server" / "__init__.py").write_text("")
    monkeypatch.chdir(tmp_path)
    assert "run from another folder or rename it" in one_line_exit_2(capsys, ["compare", "--duration", "5"])
