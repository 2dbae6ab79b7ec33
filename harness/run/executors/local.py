"""The embedded default: the host's MPI launcher starts `np` ranks of `apptainer exec` (hybrid).

With the bind model the host's MPI library is bound over the container's, the way a Flux view or
a host PMI library is mounted into an image on a cluster: an image older than the host then
fails to load it (glibc), which is a genuine os-abi failure.

The job is a process of this machine (harness.run.executors.process) followed by the common
lifecycle (core.py): its name is a random mark in the environment of every process it starts,
journaled before it starts, so that a rerun finds and kills whatever a killed harness left.
"""

from __future__ import annotations

import os
import shlex
import shutil
import time
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from harness.errors import HarnessError
from harness.mpi import OPENMPI_ROOT_ENV, SONAMES, host_library, launcher_mpi
from harness.run import runtime
from harness.run.executors import process
from harness.run.executors.base import Caps, Job, JobResult, Option
from harness.run.executors.core import (
    ENDED,
    FINISHED,
    STARTED,
    SUBMITTED,
    Collected,
    Event,
    Lifecycle,
    Policy,
    Prepared,
    Trace,
)
from harness.run.executors.process import JOB_MARK, marked

__all__ = ["JOB_MARK", "LocalExecutor", "marked"]
SLICE_S = 1.0  # the longest a poll waits for the launcher's end


@dataclass(frozen=True)
class _Launch:
    stdout: Path
    stderr: Path
    env: dict[str, str]


class LocalExecutor:
    name = "local"
    caps: ClassVar[Caps] = Caps()
    OPTIONS: ClassVar[tuple[Option, ...]] = ()

    def __init__(self, launcher: str):
        self.launcher = launcher
        self.version: str | None = None  # the launcher's MPI, after preflight
        self._runtime: str | None = None
        self._impl: str | None = None
        self._procs: dict = {}  # job mark -> the launcher's process, of the jobs in flight
        self._core = Lifecycle(self, Policy("local executor", ".job"))

    def preflight(self) -> None:
        self._runtime = runtime.executable()
        if shutil.which(self.launcher) is None:
            raise HarnessError(f"MPI launcher {self.launcher!r} not found on PATH")
        self._impl, version = launcher_mpi(self.launcher)
        self.version = f"{self._impl} {version}"

    def argv(self, job: Job) -> list[str]:
        if self._runtime is None:
            self.preflight()
        inner = [self._runtime, "exec"]
        if job.workdir:
            inner += ["--pwd", job.workdir]
        for spec in self.binds(job):
            inner += ["--bind", spec]
        inner += [*job.runtime_options, str(job.sif), *job.command]
        return [shutil.which(self.launcher), *job.launcher_options, "-n", str(job.np), *inner]

    def preview(self, job: Job) -> str:
        return shlex.join(self.argv(job))

    def binds(self, job: Job) -> list[str]:
        """Host files bound into the image: the host's MPI library in the bind model."""
        if job.mpi_model != "bind":
            return []
        lib = host_library(SONAMES[self._impl])
        return [f"{lib.resolve()}:{lib}"]

    def run(self, job: Job) -> JobResult:
        return self._core.run(job)

    def cancel_all(self) -> None:
        """Kill every job in flight (the run is being interrupted)."""
        self._core.cancel_all()

    # -- the lifecycle's backend --------------------------------------------------------------
    def prepare(self, job: Job, name: str) -> Prepared:
        env = dict(os.environ)
        if self._impl == "OpenMPI":
            env.update(OPENMPI_ROOT_ENV)
        # The job's mark, journaled before it starts: every process of the job inherits it, so
        # a rerun finds and kills them whenever this harness died, even before Popen returned.
        token = uuid.uuid4().hex
        env[JOB_MARK] = token
        launch = _Launch(Path(job.stdout), Path(job.stderr), env)
        argv = self.argv(job)
        return Prepared(token, argv, launch, binds=self.binds(job), runtime=self._runtime)

    def submit(self, prepared: Prepared) -> tuple[str, list[Event]]:
        launch: _Launch = prepared.native
        t = time.time()
        self._procs[prepared.name] = process.spawn(
            prepared.argv, launch.stdout, launch.stderr, launch.env
        )
        return prepared.name, [Event(SUBMITTED, at=t), Event(STARTED, at=t)]

    def poll(self, jobid: str, until: float | None) -> list[Event]:
        left = SLICE_S if until is None else min(SLICE_S, until - time.monotonic())
        code = process.wait(self._procs[jobid], left)
        if code is None:
            return []
        self._procs.pop(jobid, None)
        exit_code, sig = process.exit_status(code)
        return [Event(FINISHED, at=time.time(), exit_code=exit_code, signal=sig), Event(ENDED)]

    def waiting(self, jobid: str) -> tuple[str, str]:
        return "running", "started at once"

    def cancel(self, jobids: Sequence[str], why: str) -> None:
        for token in jobids:
            proc = self._procs.get(token)
            if proc is not None:
                process.killpg(proc.pid)
            else:  # left by a killed harness: found by its mark
                process.kill_marked(token)

    def find(self, entry: dict) -> list[str]:
        return [entry["name"]] if marked(process.mark(entry["name"])) else []

    def active(self, jobids: Collection[str]) -> set[str]:
        return {t for t in jobids if marked(process.mark(t))}

    def collect(self, jobid: str, job: Job, prepared: Prepared, trace: Trace) -> Collected:
        return Collected(prepared.argv)
