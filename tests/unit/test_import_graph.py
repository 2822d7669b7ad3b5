"""The import graph of backend/ has no cycle, counting every import: module-level, function-local and
TYPE_CHECKING-only ones (a function-local import that closes a circle is still a circle, only hidden)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "backend"


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, for its __init__)."""
    found: dict[str, Path] = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imported_names(module: str, path: Path, modules: dict[str, Path]) -> Iterator[str]:
    """The dotted names `module` imports anywhere in its body, relative imports resolved."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target
            for alias in node.names:  # `from backend.x import submodule`
                if f"{target}.{alias.name}" in modules:
                    yield f"{target}.{alias.name}"


def import_graph() -> dict[str, set[str]]:
    """module -> the backend modules it imports (an import of a.b.c also runs a/__init__ and a/b/__init__,
    but those are docstrings only; the edge goes to the module named)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for imported in _imported_names(name, path, modules):
            # `import backend.x.y` names a module; `from backend.x.y import f` names one too (f is not one).
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name and imported.split(".")[0] == PACKAGE:
                graph[name].add(imported)
    return graph


def strongly_connected_components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component: list[str] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return components


def test_the_graph_sees_function_local_and_relative_imports() -> None:
    graph = import_graph()
    assert "backend.db" in graph["backend.events"]  # a module-level import
    assert len(graph) > 40 and sum(map(len, graph.values())) > 100
    # Function-local imports count: backend.db imports backend.models inside _tenant_models().
    assert "backend.models" in graph["backend.db"]


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert sorted(c for c in strongly_connected_components(graph) if len(c) > 1) == [["a", "b", "c"]]


def test_backend_has_no_import_cycle() -> None:
    cycles = [c for c in strongly_connected_components(import_graph()) if len(c) > 1]
    assert cycles == [], "modules of backend/ that import each other in a circle: " + "; ".join(
        ", ".join(c) for c in cycles
    )


DOMAIN_PACKAGES = ("backend.scheduling", "backend.waitlist", "backend.tenancy")


def test_domain_packages_do_not_import_notifications() -> None:
    """Scheduling, waitlist and tenancy record domain events; the notifications package subscribes to them
    (backend.notifications.subscriber, wired by backend.composition). No domain module imports it, function-local
    imports included. (The shared modules they use, backend.db and backend.settings, reach its models and its
    settings parser; that is not the domain asking for a notice.)"""
    graph = import_graph()
    domain = [m for m in graph if m in DOMAIN_PACKAGES or m.startswith(tuple(p + "." for p in DOMAIN_PACKAGES))]
    assert {"backend.scheduling.booking", "backend.waitlist.offers", "backend.tenancy.service"} <= set(domain)
    offenders = {
        module: found
        for module in domain
        if (found := sorted(m for m in graph[module] if m.split(".")[:2] == ["backend", "notifications"]))
    }
    assert offenders == {}, f"domain modules that import backend.notifications: {offenders}"


def test_events_and_the_unit_of_work_do_not_know_their_subscribers() -> None:
    graph = import_graph()
    for module in ("backend.events", "backend.db"):
        assert not any(m.startswith(("backend.notifications", "backend.composition")) for m in graph[module]), module
