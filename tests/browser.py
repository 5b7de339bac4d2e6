"""Headless Chromium for browser tests: Debian's /usr/bin/chromium driven by Playwright, never a download.

`make test` apt-installs the `chromium` package when it is missing. The flags keep Chromium off the
network (this machine has none) and out of its sandbox (tests run as root).
"""

from __future__ import annotations

from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def launch_chromium(playwright: Any) -> Any:
    """A headless Chromium browser from Debian's package."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
