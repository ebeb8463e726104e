"""The shape docs/architecture.md promises, checked on the source itself.

- no module imports another in a circle (lazy imports inside functions count too: a cycle is
  a cycle however late it runs; imports for type checkers alone, which never run, do not);
- the planner (provision/plan/) imports nothing that writes (provision/apply/);
- sources and servers are reached through their registries, not by type checks elsewhere.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "provision"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _type_checking_only(tree: ast.Module) -> set[int]:
    """Ids of the import nodes under ``if TYPE_CHECKING:``, which never run."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            skipped.update(id(inner) for child in node.body for inner in ast.walk(child))
    return skipped


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    names: set[str] = set()
    tree = ast.parse(path.read_text())
    skipped = _type_checking_only(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            candidates = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        names.update(c for c in candidates if c in modules)
    return names


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_in_a_circle() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        node = todo.pop()
        for other in graph[node] - seen:
            seen.add(other)
            todo.append(other)
    return seen


def test_the_planner_imports_nothing_that_writes() -> None:
    graph = _graph()
    for module in [m for m in graph if m.startswith("provision.plan.")]:
        writers = {m for m in _reachable(graph, module) if m.startswith("provision.apply")}
        assert writers == set(), f"{module} reaches {sorted(writers)}"


def test_sources_are_dispatched_only_through_their_registry() -> None:
    """A source's model class is named only by the model, its own module and the modules
    whose job is that source (the CSR workflow, provided-file lint rules and loading)."""
    allowed = {
        "provision/model/playbook.py",
        "provision/sources/provided.py",
        "provision/sources/internal_ca.py",
        "provision/sources/supplied.py",
        "provision/inputs/load.py",
        "provision/lint.py",
        "provision/converged/document.py",
    }
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        relative = str(path.relative_to(PACKAGE.parent))
        text = path.read_text()
        for name in ("SelfSignedSource", "CaSource", "ProvidedSource", "source.type =="):
            if name in text and relative not in allowed:
                offenders.append(f"{relative}: {name}")
    assert offenders == []
