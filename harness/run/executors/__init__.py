"""Executors launch one MPI job of a containerised command and follow it to its end.

`local` is the embedded default (the host's MPI launcher starting ranks of `apptainer exec`);
`flux` submits the same job to a Flux instance through the Flux Python bindings; `slurm` starts
it with srun as a Slurm job; `minicluster` renders one Flux Operator MiniCluster per job through
the Kubernetes API. All take a Job and return a JobResult through one lifecycle (core.py: the
journal, the sweep of leftovers, deadlines, interrupts, the outcome) and are thin adapters to
their scheduler; each declares its command-line options (`OPTIONS`) and its abilities (`caps`,
base.Caps): the CLI is built from this registry. docs/executors.md shows how to add one.
"""

from __future__ import annotations

import importlib
from typing import Any

from harness.errors import HarnessError
from harness.run.executors.base import Caps, Executor, Job, JobResult, Option

__all__ = [
    "AUTO",
    "EXECUTORS",
    "Caps",
    "Executor",
    "Job",
    "JobResult",
    "Option",
    "choose",
    "create",
    "executor_class",
]

# name -> module:class, imported on use (Flux and Kubernetes clients load only when chosen)
REGISTRY = {
    "local": "harness.run.executors.local:LocalExecutor",
    "flux": "harness.run.executors.flux:FluxExecutor",
    "minicluster": "harness.run.executors.minicluster:MiniClusterExecutor",
    "slurm": "harness.run.executors.slurm:SlurmExecutor",
}
EXECUTORS = tuple(REGISTRY)
AUTO = "auto"  # the default: flux inside a reachable Flux instance, else local


def choose(requested: str, uri: str | None = None) -> tuple[str, str | None]:
    """The executor a command uses, and for AUTO the line that says which and why.

    Inside a Flux instance (FLUX_URI, or a Flux Operator pod's view: harness.run.flux_view)
    whose broker answers, `flux`; otherwise `local`, said only where a Flux was to be expected
    (a view without a broker, an unreachable FLUX_URI): on a plain machine local is no news.
    Any other name is taken as given."""
    if requested != AUTO:
        return requested, None
    from harness.run import flux_view

    found = flux_view.ensure()
    target = uri or found.uri
    if target is None:
        if not found.hinted:
            return "local", None
        return "local", (
            f"executor local (the MPI launcher on this machine): no Flux instance "
            f"({found.source}); --executor flux or slurm to use a scheduler"
        )
    from harness.run.executors.flux_api import connect, instance_version

    try:
        version = instance_version(connect(target))
    except HarnessError as exc:
        return "local", f"executor local, although a Flux instance is named: {exc}"
    source = "" if found.source == "FLUX_URI" else f", found through {found.source}"
    return "flux", (
        f"executor flux: the Flux instance at {target} (flux-core {version or 'unknown'}"
        f"{source}); --executor local runs with the MPI launcher on this machine instead"
    )


def names() -> tuple[str, ...]:
    """The registered executors (a test may register one of its own)."""
    return tuple(REGISTRY)


def executor_class(name: str) -> type:
    if name not in REGISTRY:
        raise HarnessError(f"unknown executor {name!r} (known: {', '.join(names())})")
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def create(name: str, launcher: str, options: dict[str, Any] | None = None) -> Executor:
    """An executor by name; `options` are its own settings (fields named by its OPTIONS)."""
    options = {k: v for k, v in (options or {}).items() if v is not None}
    cls = executor_class(name)
    if name == "local":
        return cls(launcher, **options)
    return cls(**options)
