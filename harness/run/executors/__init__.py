"""Executors launch one MPI job of a containerised command and follow it to its end.

`local` is the embedded default (the host's MPI launcher starting ranks of `apptainer exec`);
`flux` submits the same job to a Flux instance through the Flux Python bindings; `minicluster`
renders one Flux Operator MiniCluster per job through the Kubernetes API. All take a Job and
return a JobResult, and declare their own command-line options (`OPTIONS`): the CLI is built
from this registry.
"""

from __future__ import annotations

import importlib
from typing import Any

from harness.errors import HarnessError
from harness.run.executors.base import Executor, Job, JobResult, Option

__all__ = ["EXECUTORS", "Executor", "Job", "JobResult", "Option", "create", "executor_class"]

# name -> module:class, imported on use (Flux and Kubernetes clients load only when chosen)
REGISTRY = {
    "local": "harness.run.executors.local:LocalExecutor",
    "flux": "harness.run.executors.flux:FluxExecutor",
    "minicluster": "harness.run.executors.minicluster:MiniClusterExecutor",
    "slurm": "harness.run.executors.slurm:SlurmExecutor",
}
EXECUTORS = tuple(REGISTRY)


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
