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


# -- comparison/: a room per scenario ------------------------------------------------------------------------

MAX_LINES = 400
# Words that are also scenario names but name something else; each with what it names.
OTHER_MEANINGS = {
    ("comparison/report.py", "capacity"): "run.json's capacity record",
    ("comparison/fleet_report.py", "fleet"): "the chart's SVG id salt",
    ("comparison/metastable_report.py", "metastable"): "the chart's SVG id salt",
    ("comparison/target.py", "outage"): "the target's /admin/faults kind",
    ("comparison/metastable.py", "capacity"): "the metastable trigger's kind",
    ("comparison/__main__.py", "capacity"): "--capacity's value name",
}


def module_graph() -> dict[str, set[str]]:
    """Every module of the four packages (subpackages included) and the modules it imports. Importing
    `a.b.c` from outside the package `a.b` runs `a.b`'s __init__ too, and comparison/scenarios/'s
    __init__ imports each of its modules (found at run time), so those edges are drawn as well."""
    graph: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            own_package = ".".join(parts[:-1])
            graph[name] = imports_of(path, own_package if parts[-1] == "__init__" else package)
    for name, targets in graph.items():
        for target in list(targets):
            parent = target.rpartition(".")[0]
            if parent in graph and parent != name and parent.count(".") and not name.startswith(parent + "."):
                targets.add(parent)
    scenarios = "comparison.scenarios"
    graph.setdefault(scenarios, set()).update(
        n for n in graph if n.startswith(scenarios + ".") and n != scenarios + ".base"
    )
    return graph


def cycle_in(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as a list of modules (first == last), or [] when there is none."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in graph:
                continue
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_no_import_cycle_of_any_length():
    assert cycle_in(module_graph()) == []


def test_the_cycle_finder_finds_a_long_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycle_in(graph) == ["a", "b", "c", "a"]
    assert cycle_in({"a": {"b"}, "b": set()}) == []


def test_no_module_of_the_lab_is_over_400_lines():
    """The house rule splits a module past ~300 lines by idea; 400 is where this test stops waiting."""
    long = {
        str(path.relative_to(ROOT)): count
        for folder in (
            "comparison",
            "locust_plugin",
            "mitigations",
            "target_server",
            "locustfiles",
            "benchmarks",
        )
        for path in (ROOT / folder).rglob("*.py")
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def scenario_literals() -> list[tuple[str, int, str]]:
    """Every string literal in comparison/ that is a scenario's name, outside that scenario's module."""
    import sys

    from comparison.scenarios import REGISTRY

    own = {name: Path(sys.modules[type(s).__module__].__file__).resolve() for name, s in REGISTRY.items()}
    found = []
    for path in (ROOT / "comparison").rglob("*.py"):
        relative = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                continue
            elsewhere = node.value in own and own[node.value] != path.resolve()
            if elsewhere and (relative, node.value) not in OTHER_MEANINGS:
                found.append((relative, node.lineno, node.value))
    return found


def test_a_scenario_is_named_only_in_its_own_module():
    """The runner, the config, the report and the narrative loop over the registry: a scenario's name
    as a literal anywhere else in comparison/ is a switch on it that belongs in its module."""
    assert scenario_literals() == []


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
