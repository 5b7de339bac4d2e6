"""Whether the current folder would shadow one of Hammerlab's top-level packages.

The lab installs generic top-level names (comparison, mitigations, ...). Locust puts the current folder
first on `sys.path` before it imports a locustfile, so a `./mitigations/` or `./comparison.py` in the
folder a user runs from would replace the lab's package inside every Locust process the comparison
starts, with a confusing ImportError far from the cause. This check names it at once instead.
"""

from __future__ import annotations

from pathlib import Path

PACKAGES = ("hammerlab", "target_server", "mitigations", "locust_plugin", "locustfiles", "comparison")
"""The distribution's top-level import names (pyproject.toml's [tool.setuptools] packages)."""


def shadowing(folder: Path, installed_at: Path) -> str | None:
    """The first entry of `folder` that would shadow a package living in `installed_at`, as one line;
    None when there is none (a checkout's own folder is not a shadow of itself)."""
    for name in PACKAGES:
        ours = (installed_at / name).resolve()
        # a folder without __init__.py is at most a namespace portion: a regular package still wins
        package, module = folder / name, folder / f"{name}.py"
        for candidate, marker in ((package, package / "__init__.py"), (module, module)):
            if marker.is_file() and candidate.resolve() != ours:
                return (
                    f"{str(candidate)!r} would shadow Hammerlab's own {name} package in the Locust processes "
                    "(Locust puts the current folder first on sys.path); run from another folder or rename it"
                )
    return None
