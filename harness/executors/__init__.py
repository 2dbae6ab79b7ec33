"""Executors launch one MPI job of a containerised command and follow it to its end.

`local` is the embedded default (the host's MPI launcher starting ranks of `apptainer exec`);
`flux` submits the same job to a Flux instance. Both take a Job and return a JobResult.
"""

from __future__ import annotations

from harness.errors import HarnessError
from harness.executors.base import Executor, Job, JobResult

__all__ = ["Executor", "Job", "JobResult", "create"]


def create(name: str, launcher: str) -> Executor:
    if name == "local":
        from harness.executors.local import LocalExecutor

        return LocalExecutor(launcher)
    if name == "flux":
        raise HarnessError("executor 'flux' is not available in this version (see issue: flux)")
    raise HarnessError(f"unknown executor {name!r} (known: local, flux)")
