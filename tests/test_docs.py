"""The docs document what exists, and stay in step with the code: the README is the landing page, the
reference lives in docs/*.md, and every flag of every entry point is on its page."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from comparison.__main__ import build_parser
from locust_plugin.options import OPTIONS
from locust_plugin.users import MitigatedClient
from locustfiles import clients
from target_server.options import OPTIONS as TARGET_OPTIONS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
PAGES = {path.name: path.read_text() for path in (ROOT / "docs").glob("*.md")}
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    found = set()
    for heading in re.findall(r"^#+ (.+)$", markdown, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def test_every_client_option_is_on_the_clients_page():
    page = PAGES["clients.md"]
    assert not [option.flag for option in OPTIONS if f"`{option.flag}`" not in page]


def test_every_target_flag_is_on_the_target_page():
    page = PAGES["target-server.md"]
    assert not [option.flag for option in TARGET_OPTIONS if f"`{option.flag}`" not in page]


def test_every_comparison_flag_is_on_the_comparison_pages():
    names = ("comparison.md", "own-service.md", "fleets.md", "server-metrics.md", "metastable.md")
    names += ("distributed.md",)
    pages = "".join(PAGES[name] for name in names)
    flags = [
        flag
        for action in build_parser()._actions
        for flag in action.option_strings
        if flag.startswith("--") and flag != "--help"
    ]
    assert len(flags) >= 15
    assert not [flag for flag in flags if f"`{flag}" not in pages]


def test_every_client_class_is_in_the_readme():
    classes = [
        name
        for name, value in vars(clients).items()
        if isinstance(value, type) and issubclass(value, MitigatedClient) and value is not MitigatedClient
    ]
    assert len(classes) >= 10
    assert not [name for name in classes if f"`{name}`" not in README]


def test_every_link_between_the_pages_leads_somewhere():
    broken = []
    texts = {ROOT / "README.md": README, **{ROOT / "docs" / name: text for name, text in PAGES.items()}}
    for path, text in texts.items():
        for target in LINK.findall(text):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            if not linked.exists():
                broken.append(f"{path.name}: {target}")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text()):
                broken.append(f"{path.name}: {target} (no such heading)")
    assert broken == []


def test_the_readme_is_a_landing_page_that_links_every_reference_page():
    assert len(README.splitlines()) < 300
    assert "make demo" in README and "make test" in README
    unlinked = [name for name in PAGES if f"docs/{name}" not in README]
    assert unlinked == []


@pytest.mark.slow
def test_python_m_locust_plugin_lists_every_option():
    out = subprocess.run(
        [sys.executable, "-m", "locust_plugin"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert all(option.flag in out for option in OPTIONS)
