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


# Every module's stage, lowest floor first: base, judge, records, select, run, report, lab, then
# the command line (commands, cli, __main__). A stage is a package or a list of top-level modules.
STAGES = {
    "base": (
        "harness.application",
        "harness.errors",
        "harness.files",
        "harness.mpi",
        "harness.reason_names",
        "harness.system",
        "harness.usage",
    ),
    "judge": ("harness.judge",),
    "records": ("harness.outdir", "harness.records", "harness.record_index"),
    "select": ("harness.select",),
    "run": ("harness.run",),
    "report": ("harness.report",),
    "lab": ("harness.lab",),
    "commands": ("harness.commands",),
    "cli": ("harness.cli", "harness.__main__"),
}
# Only the command line may import the commands, and only __main__ the command line.
TOP = ("harness.commands", "harness.cli", "harness.__main__")
# Stage -> what it must never import (downstream of it in the pipeline).
FORBIDDEN = {
    "judge": ("harness.select", "harness.run", "harness.report", "harness.lab", *TOP)
    + STAGES["records"],
    "records": ("harness.select", "harness.run", "harness.report", "harness.lab", *TOP),
    "select": ("harness.run", "harness.judge", "harness.report", "harness.lab", *TOP),
    "run": ("harness.report", "harness.lab", *TOP),
    "report": ("harness.run", "harness.lab", *TOP),
    "lab": ("harness.report", *TOP),
    "commands": ("harness.cli", "harness.__main__"),
    "cli": ("harness.__main__",),
}


def stage_of(module: str) -> str | None:
    if module == "harness":  # the package's __init__ (a docstring): base
        return "base"
    for stage, members in STAGES.items():
        if any(module == m or module.startswith(m + ".") for m in members):
            return stage
    return None


def test_every_module_has_a_stage():
    assert [m for m in graph() if stage_of(m) is None] == []


@pytest.mark.parametrize("stage", sorted(FORBIDDEN))
def test_imports_point_down_the_pipeline(stage):
    bad = [
        f"{mod} imports {dep}"
        for mod, deps in graph().items()
        if stage_of(mod) == stage
        for dep in deps
        if dep.startswith(FORBIDDEN[stage])
    ]
    assert not bad, bad


def test_base_modules_import_no_stage():
    edges = graph()
    base = [m for m in edges if stage_of(m) == "base"]
    assert base, "no base module found"
    for mod in base:
        assert edges[mod] <= set(base), (mod, edges[mod])


def sources() -> dict[str, str]:
    return {module_name(p): p.read_text() for p in sorted(ROOT.rglob("*.py"))}


MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
# Over the limits today, each to be split along its own seams; an entry goes when its module or
# function is back under the limit (the test fails on an entry that is no longer needed).
LONG_MODULES: set[str] = set()
LONG_FUNCTIONS: set[str] = set()


def too_long() -> tuple[set[str], set[str]]:
    modules, functions = set(), set()
    for name, text in sources().items():
        if len(text.splitlines()) > MAX_MODULE_LINES:
            modules.add(name)
        for node in ast.walk(ast.parse(text)):
            if (
                isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
            ):
                functions.add(f"{name}.{node.name}")
    return modules, functions


def test_no_module_or_function_over_the_limits():
    modules, functions = too_long()
    assert modules == LONG_MODULES, f"over {MAX_MODULE_LINES} lines: {sorted(modules)}"
    assert functions == LONG_FUNCTIONS, f"over {MAX_FUNCTION_LINES} lines: {sorted(functions)}"


# Reasons are named in one place: harness/data/reasons.yaml, read by harness/judge/reasons.py;
# the code spells them by the constants of harness/reason_names.py (the same set, its test says).
REASONS_MODULE = "harness.judge.reasons"
NAMES_MODULE = "harness.reason_names"
# Modules still spelling a reason name as a string literal, with how many literals: each count
# may only go down (an entry at 0 is removed). These are the same word in another sense (the
# record field "application", the attribute family "gpu", the fault kind "pull").
REASON_LITERALS = {
    # "application": the kind of input file read; "gpu": a section of the application's file
    "harness.application": 2,
    "harness.judge.faults": 1,  # "pull": a fault kind
    "harness.judge.provenance": 1,  # "application": a provenance source
    "harness.lab.matrix": 2,  # "arch": a field of the lab spec
    "harness.mpi": 4,  # "mpi": a section of harness/data/pmi.yaml
    "harness.records": 2,  # "application": a record field and a source
    "harness.report.document": 2,  # "success": a column heading
    "harness.report.export": 1,  # "success": a CSV column
    "harness.report.model": 2,  # "success", "application": JSON keys
    "harness.report.stats": 1,  # "success": a JSON key
    "harness.run.executors": 1,  # "unknown": a Flux version not reported
    # "timeout": the scheduler's own limit (an event kind), the harness's cancel for its limit
    "harness.run.executors.core": 3,
    "harness.run.executors.flux": 1,  # "unknown": a Flux version not reported
    "harness.run.executors.flux_events": 1,  # "timeout": a Flux exception type
    "harness.run.executors.image_mpi": 1,  # "mpi": a key of the record's pmi entry
    "harness.run.executors.minicluster_pods": 1,  # "pull": a fault kind
    "harness.run.executors.slurm": 2,  # "mpi": an option's key; "unknown": a job state
    "harness.run.runner": 4,  # "application": a field and a source; "pull": a fault kind
    "harness.run.runtime": 1,  # "pull": Apptainer's command
    "harness.select.artifact_create": 3,  # "unknown": an MPI variant not yet known
    "harness.select.matching": 3,  # "arch", "mpi": comparison kinds of attributes.yaml
    # "mpi": matching's comparison kind; "success": a label of the published csv
    "harness.select.predict": 3,
}


def reason_literals(texts: dict[str, str]) -> dict[str, int]:
    """Per module, its string literals equal to a reason name."""
    from harness.judge.reasons import REASONS

    found: dict[str, int] = {}
    for name, text in texts.items():
        if name in (REASONS_MODULE, NAMES_MODULE):
            continue
        n = sum(
            isinstance(node, ast.Constant) and node.value in REASONS
            for node in ast.walk(ast.parse(text))
        )
        if n:
            found[name] = n
    return found


def test_reason_names_come_from_the_reasons_data():
    found = reason_literals(sources())
    grown = {m: n for m, n in found.items() if n > REASON_LITERALS.get(m, 0)}
    assert not grown, f"reason names as string literals (use harness.reason_names): {grown}"
    shrunk = {m: n for m, n in REASON_LITERALS.items() if found.get(m, 0) < n}
    assert not shrunk, f"fewer reason literals than allowed: lower REASON_LITERALS to {shrunk}"


def test_the_reason_check_sees_a_literal():
    from harness.judge.reasons import REASONS

    text = f"r = {REASONS[0]!r}\n"
    texts = {"harness.x": text, REASONS_MODULE: text, NAMES_MODULE: text}
    assert reason_literals(texts) == {"harness.x": 1}


# The application is data (harness/data/applications/NAME.yaml, read by harness.application):
# no module names LAMMPS' program, inputs or figures, except the lab, which builds LAMMPS images.
APPLICATION_LITERALS = ("/usr/bin/lmp", "lmp_gpu", "timesteps", "in.lj", "in.reaxc")
APPLICATION_FREE_EXCEPT = ("harness.lab",)


def application_literals(texts: dict[str, str]) -> dict[str, list[str]]:
    """Per module (the lab left out), the application literals its text holds."""
    return {
        name: hits
        for name, text in texts.items()
        if not name.startswith(APPLICATION_FREE_EXCEPT)
        and (hits := [w for w in APPLICATION_LITERALS if w in text])
    }


def test_no_application_literal_outside_the_data():
    assert application_literals(sources()) == {}


def test_the_application_check_sees_a_literal():
    texts = {"harness.x": 'CMD = "lmp -in in.lj"\n', "harness.lab.build": "in.lj\n"}
    assert application_literals(texts) == {"harness.x": ["in.lj"]}
