"""The layout docs/architecture.md draws, held by a test: no import cycle anywhere in
``plantsync/`` (function-level and ``TYPE_CHECKING`` imports included), the dependency
direction between the rooms, and modules a reader can hold in their head."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "plantsync"

MAX_MODULE_LINES = 450
"""STYLE: a module passing ~400 lines has two jobs; 450 leaves room for a docstring."""

MAX_PACKAGE_MODULES = 12

FORBIDDEN: dict[str, tuple[str, ...]] = {
    "agent": ("web", "tools", "sim", "app"),
    "drivers": ("agent", "buffer", "web", "tools", "sim", "app"),
    "buffer": ("agent", "drivers", "web", "tools", "sim", "app"),
    "config": ("agent", "drivers", "buffer", "web", "tools", "sim", "app"),
    "contracts": ("agent", "drivers", "buffer", "config", "web", "tools", "sim", "app"),
    "web": ("tools", "sim", "app"),
    "sim": ("agent", "web", "tools", "app"),
}
"""Room → rooms it must not import (tools and app.py may import every room)."""


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _imports(name: str, path: Path, known: set[str]) -> Iterator[str]:
    """Every plantsync module ``name`` imports, wherever the import statement stands."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            candidates = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for candidate in candidates:
            # ``from plantsync.drivers import SOURCES`` depends on the package's __init__.
            if candidate in known and candidate != name:
                yield candidate


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: set(_imports(name, path, set(modules))) for name, path in modules.items()}


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
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in graph:
        if node not in index:
            visit(node)
    return found


def _room(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def _package_edges(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """A package's __init__ may re-export its own modules: that is no cycle through it."""
    return {
        name: {target for target in targets if not name.startswith(f"{target}.")}
        for name, targets in graph.items()
    }


def test_no_module_in_plantsync_is_part_of_an_import_cycle() -> None:
    assert _cycles(_package_edges(_graph())) == []


@pytest.mark.parametrize("room", sorted(FORBIDDEN))
def test_each_room_imports_only_in_the_dependency_direction(room: str) -> None:
    wrong = {
        f"{name} → {target}"
        for name, targets in _graph().items()
        if _room(name) == room
        for target in targets
        if _room(target) in FORBIDDEN[room]
    }
    assert wrong == set()


def test_nothing_in_plantsync_imports_the_tests() -> None:
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tests"):
                raise AssertionError(f"{path} imports {node.module}")


def test_every_module_is_short_enough_to_read_and_every_package_narrow() -> None:
    long = {
        str(path.relative_to(PACKAGE.parent)): lines
        for path in PACKAGE.rglob("*.py")
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}
    wide = {
        str(folder.relative_to(PACKAGE.parent)): count
        for folder in [PACKAGE, *(p for p in PACKAGE.rglob("*") if p.is_dir())]
        if (count := len([p for p in folder.glob("*.py") if p.name != "__init__.py"]))
        > MAX_PACKAGE_MODULES
    }
    assert wide == {}


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The guard itself can fail: two modules importing each other are reported."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
