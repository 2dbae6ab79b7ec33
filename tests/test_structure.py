"""The package's shape: no import cycle, and every import points down the pipeline.

Modules are grouped by pipeline stage (select -> run -> judge -> records -> report); the
stages may import the shared base modules and earlier stages' data types, never a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "harness"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """harness modules a file imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("harness"):
            found.add(node.module)
            for alias in node.names:  # `from harness.select import host` imports a module
                candidate = f"{node.module}.{alias.name}"
                if (ROOT.parent / Path(*candidate.split("."))).with_suffix(".py").exists():
                    found.add(candidate)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("harness"))
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        # a package's __init__ is imported on the way to any of its modules: not an edge
        edges[name] = {m for m in imports_of(path) if m in modules and m != name}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_harness():
    cycle = find_cycle(graph())
    assert cycle is None, " -> ".join(cycle or [])


# Stage -> the stages it must never import (downstream of it in the pipeline).
FORBIDDEN = {
    "harness.select": ("harness.run", "harness.judge", "harness.report", "harness.cli"),
    "harness.judge": ("harness.select", "harness.run", "harness.records", "harness.report"),
    "harness.records": ("harness.select", "harness.run", "harness.report", "harness.cli"),
    "harness.run": ("harness.report", "harness.cli"),
    "harness.report": ("harness.run", "harness.cli"),
}
BASE = (
    "harness.application",
    "harness.errors",
    "harness.files",
    "harness.mpi",
    "harness.system",
)


@pytest.mark.parametrize("stage", sorted(FORBIDDEN))
def test_imports_point_down_the_pipeline(stage):
    bad = [
        f"{mod} imports {dep}"
        for mod, deps in graph().items()
        if mod == stage or mod.startswith(stage + ".")
        for dep in deps
        if dep.startswith(FORBIDDEN[stage])
    ]
    assert not bad, bad


def test_base_modules_import_no_stage():
    edges = graph()
    for base in BASE:
        assert edges[base] <= set(BASE), (base, edges[base])
