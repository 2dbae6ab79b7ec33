"""The embedded default: the host's MPI launcher starts `np` ranks of `apptainer exec` (hybrid).

With the bind model the host's MPI library is bound over the container's, the way a Flux view or
a host PMI library is mounted into an image on a cluster: an image older than the host then
fails to load it (glibc), which is a genuine os-abi failure.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import ClassVar

from harness.errors import HarnessError
from harness.files import atomic_write
from harness.mpi import OPENMPI_ROOT_ENV, SONAMES, host_library, launcher_mpi
from harness.run import runtime
from harness.run.executors.base import Job, JobResult, Option

# The environment variable that marks every process of a job with its attempt's token.
JOB_MARK = "HARNESS_JOB_MARK"


class LocalExecutor:
    name = "local"
    needs_sif = True
    OPTIONS: ClassVar[tuple[Option, ...]] = ()

    def __init__(self, launcher: str):
        self.launcher = launcher
        self.version: str | None = None  # the launcher's MPI, after preflight
        self._runtime: str | None = None
        self._impl: str | None = None
        self._live: set[subprocess.Popen] = set()

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
        argv = self.argv(job)
        env = dict(os.environ)
        if self._impl == "OpenMPI":
            env.update(OPENMPI_ROOT_ENV)
        # One journal per iteration (not per attempt): a rerun finds what a killed harness left.
        journal = job.stdout.with_name(job.stdout.name.split(".", 1)[0] + ".job")
        kill_leftover(journal)
        # The job's mark, journaled before it starts: every process of the job inherits it, so
        # a rerun can find and kill them whenever this harness died, even before Popen returned.
        token = uuid.uuid4().hex
        env[JOB_MARK] = token
        atomic_write(journal, token.encode())
        start = time.perf_counter()
        with job.stdout.open("wb") as out, job.stderr.open("wb") as err:
            # Own session: a timeout kills the launcher and every rank it started.
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
            self._live.add(proc)
            timed_out = False
            try:
                proc.wait(timeout=job.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:  # timeout, Ctrl-C, SIGTERM or any error: the job does not outlive this
                if proc.poll() is None:
                    _killpg(proc.pid)
                    proc.wait()
                self._live.discard(proc)
                journal.unlink(missing_ok=True)
        run_s = time.perf_counter() - start
        code = proc.returncode
        sig = -code if code < 0 else None
        return JobResult(
            argv=argv,
            exit_code=128 + sig if sig else code,
            signal=sig,
            timed_out=timed_out,
            queue_s=0.0,
            run_s=run_s,
            binds=self.binds(job),
            runtime=self._runtime,
        )

    def cancel_all(self) -> None:
        """Kill every job in flight (the run is being interrupted)."""
        for proc in list(self._live):
            _killpg(proc.pid)


def _killpg(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it ended on its own meanwhile
        os.killpg(pid, signal.SIGKILL)


def kill_leftover(journal: Path, wait_s: float = 10.0) -> None:
    """Kill what a killed harness left running for this iteration: every process carrying the
    mark its journal holds (the launcher, its ranks, their runtimes), then wait until they are
    gone. A recycled pid can never match: the mark is a random token in the environment."""
    try:
        token = journal.read_text().strip()
    except OSError:
        return
    if token:
        needle = f"{JOB_MARK}={token}".encode()
        deadline = time.monotonic() + wait_s
        while (pids := marked(needle)) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(os.getpgid(pid), signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
    journal.unlink(missing_ok=True)


def marked(needle: bytes) -> list[int]:
    """Pids of the live processes whose environment holds `needle` (NAME=value)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found
