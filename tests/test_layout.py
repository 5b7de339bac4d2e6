"""The layout shows the architecture: no module imports another that imports it back (type-only imports
included), so each module can be read on its own."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("target_server", "mitigations", "locust_plugin", "comparison")


def imports_of(path: Path, package: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == package:  # `from locust_plugin import web_ui`
                found.update(f"{package}.{alias.name}" for alias in node.names)
            elif node.module.split(".")[0] in PACKAGES:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] in PACKAGES)
    return found


def test_no_two_modules_import_each_other():
    graph: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in (ROOT / package).glob("*.py"):
            name = f"{package}.{path.stem}" if path.stem != "__init__" else package
            graph[name] = imports_of(path, package)
    pairs = sorted(
        (a, b) for a, targets in graph.items() for b in targets if a < b and a in graph.get(b, set())
    )
    assert pairs == []


# The stats code and the web UI ask each policy for its gauges (`Policy.gauges`); they name no policy type.
ASKS_POLICIES = (
    "locust_plugin/client_stats.py",
    "locust_plugin/client_rates.py",
    "locust_plugin/mitigation_rows.py",
    "locust_plugin/mitigations_board.py",
    "locust_plugin/web_ui.py",
)


def policy_types() -> set[str]:
    import importlib
    import inspect
    import pkgutil

    import mitigations
    from mitigations.core import BasePolicy

    found = {"Policy", "BasePolicy"}
    for info in pkgutil.iter_modules(mitigations.__path__):
        module = importlib.import_module(f"mitigations.{info.name}")
        classes = (name for name, value in vars(module).items() if inspect.isclass(value))
        found |= {name for name in classes if issubclass(getattr(module, name), BasePolicy)}
    return found


def test_the_stats_code_branches_on_no_policy_type():
    policies = policy_types()
    assert {"CircuitBreaker", "Throttle", "AdaptiveLimit", "SocketPool", "Defer", "GatedPolicy"} <= policies
    named = []
    for relative in ASKS_POLICIES:
        tree = ast.parse((ROOT / relative).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mitigations"):
                named += [f"{relative}: imports {a.name}" for a in node.names if a.name in policies]
            if isinstance(node, ast.Name) and node.id in policies:
                named.append(f"{relative}:{node.lineno}: {node.id}")
    assert named == []
