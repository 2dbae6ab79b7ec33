"""Executors launch one MPI job of a containerised command and follow it to its end.

`local` is the embedded default (the host's MPI launcher starting ranks of `apptainer exec`);
`flux` submits the same job to a Flux instance through the Flux Python bindings; `minicluster`
renders one Flux Operator MiniCluster per job through the Kubernetes API. All take a Job and
return a JobResult.
"""

from __future__ import annotations

from typing import Any

from harness.errors import HarnessError
from harness.executors.base import Executor, Job, JobResult

__all__ = ["EXECUTORS", "Executor", "Job", "JobResult", "create"]

EXECUTORS = ("local", "flux", "minicluster")


def create(name: str, launcher: str, options: dict[str, Any] | None = None) -> Executor:
    """An executor by name; `options` are its own settings (e.g. Flux URI, namespace)."""
    options = {k: v for k, v in (options or {}).items() if v is not None}
    if name == "local":
        from harness.executors.local import LocalExecutor

        return LocalExecutor(launcher)
    if name == "flux":
        from harness.executors.flux import FluxExecutor

        return FluxExecutor(**options)
    if name == "minicluster":
        from harness.minicluster import MiniClusterExecutor

        return MiniClusterExecutor(**options)
    raise HarnessError(f"unknown executor {name!r} (known: {', '.join(EXECUTORS)})")
