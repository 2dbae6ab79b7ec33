"""The Flux executor: each iteration is one Flux job, submitted and followed through the bindings.

The job is `apptainer exec [binds] [--pwd W] IMAGE.sif CMD...` with `np` tasks: the Flux shell
starts the ranks (PMI simple by default) and the image's MPI finds Flux's PMI library through
FLUX_PMI_LIBRARY_PATH (Open MPI 4) or the PMI wire protocol (MPICH); that library, the libraries
beside it and the job's temporary directory are bound into the container (flux_jobspec.py).
Flux schedules and enforces the duration limit; the result comes from the job's eventlog
(flux_events.py). The lifecycle (core.py) journals each job (`iter-NNNN.flux-job`, with the
instance's URI), cancels one not started within `start_timeout_s`, sweeps what a killed harness
left and cancels every job in flight on an interrupt. An instance lost while a job is followed
ends that job (fault lost-instance) and every later run() refuses: a rerun against a new
instance resumes from the records.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shlex
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from harness.errors import HarnessError
from harness.mpi import SONAMES, bootstrappable, host_library, launcher_plugins
from harness.run import runtime
from harness.run.executors import core
from harness.run.executors import flux_api as fa
from harness.run.executors import flux_events as fe
from harness.run.executors.base import Caps, Job, JobResult, Option
from harness.run.executors.core import job_name
from harness.run.executors.flux_api import bindings, builtin, connect, instance_version
from harness.run.executors.flux_jobspec import (
    TMPDIR,
    job_environment,
    jobspec_for,
    pmi_binds,
    pmi_library_path,
    shell_pmi_plugins,
)
from harness.run.executors.flux_output import job_tmpdir, write_output
from harness.select import host as hostmod
from harness.select.manifest import FLUX_SETTINGS as IMAGE_SETTINGS

CANCEL_WAIT_S = 10.0  # how long an interrupted submission waits for the job's id


@dataclass
class FluxExecutor:
    """Submit each Job to a Flux instance and follow it to the end of its eventlog.

    launcher:       recorded as the launcher ("flux").
    uri:            the instance (default: FLUX_URI, else the system instance).
    nodes:          spread the tasks over exactly this many nodes (default: Flux decides).
    cores_per_task: cores Flux allocates per task.
    contain:        `apptainer exec --contain` (the PMI library, tmpdir still bound).
    output:         "file": the job shell writes job.stdout/job.stderr itself (the outdir
                    must be visible at the same path on the nodes); "kvs": output goes to
                    the job's KVS output eventlog and the harness writes the files.
    image_settings: per-image settings (IMAGE_SETTINGS keys) by SIF file name, e.g. from the
                    manifest; a Job may also carry `flux` (a mapping) itself.
    start_timeout_s: a job with no `start` event this long after submit is cancelled and
                    recorded as failed (None or 0: wait as long as it takes).
    """

    launcher: str = "flux"
    uri: str | None = None
    nodes: int | None = None
    cores_per_task: int = 1
    contain: bool = False
    output: str = "file"
    extra_binds: Sequence[str] = ()
    image_settings: Mapping[str, Mapping] = field(default_factory=dict)
    start_timeout_s: float | None = 600.0
    name: str = field(default="flux", init=False)
    version: str | None = field(default=None, init=False)  # the instance's, after preflight
    caps: ClassVar[Caps] = Caps(describes_host=True, counts_slots=True)
    OPTIONS: ClassVar[tuple[Option, ...]] = (
        Option("--flux-uri", "uri", "the Flux instance (default: $FLUX_URI)"),
        Option("--nodes", "nodes", "spread each job over exactly this many nodes", {"type": int}),
        Option("--cores-per-task", "cores_per_task", "cores Flux gives each rank", {"type": int}),
        Option(
            "--flux-output",
            "output",
            "file: jobs write the logs (outdir shared with the nodes); kvs: the harness does",
            {"choices": ["file", "kvs"]},
        ),
        Option("--contain", "contain", "apptainer --contain", {"action": "store_true"}),
        Option(
            "--start-timeout",
            "start_timeout_s",
            "cancel a job that has not started after this many seconds, queue wait included "
            "(default 600; 0: wait forever, e.g. with --max-concurrent above what the instance "
            "holds)",
            {"type": float},
        ),
    )

    def __post_init__(self):
        if self.output not in ("file", "kvs"):
            raise HarnessError(
                f"flux executor: output must be 'file' or 'kvs', not {self.output!r}"
            )
        if self.nodes is not None and self.nodes < 1:
            raise HarnessError("flux executor: --nodes must be at least 1")
        if self.cores_per_task < 1:
            raise HarnessError("flux executor: cores per task must be at least 1")
        if self.start_timeout_s is not None and self.start_timeout_s < 0:
            raise HarnessError("flux executor: --start-timeout must not be negative")
        self._local = threading.local()  # a flux handle is not shared between threads
        self._runtime: str | None = None
        self._pmi: Path | None = None
        self._mpi_lib: Path | None = None
        self._preflighted = False
        self._states: dict[str, str] = {}  # job id -> its state, from its eventlog
        self._rundirs: dict[int, str] = {}  # broker rank -> its rundir
        policy = core.Policy(
            "flux executor", ".flux-job", start_timeout_s=self.start_timeout_s, keeps_limit=True
        )
        self._core = core.Lifecycle(self, policy)

    # -- setup -----------------------------------------------------------------------------
    def preflight(self) -> None:
        self._core.check()
        self.version = f"flux-core {instance_version(self.handle()) or 'unknown'}"
        self._runtime = runtime.executable()
        self._pmi = pmi_library_path()
        self._preflighted = True

    def handle(self):
        """This thread's handle (a flux handle is not shared between threads) and with it the
        thread's eventlog watchers, by job."""
        if getattr(self._local, "handle", None) is None:
            self._local.handle, self._local.watchers = connect(self.uri), {}
        return self._local.handle

    def _target(self) -> str | None:
        return self.uri or os.environ.get("FLUX_URI")

    def settings(self, job: Job) -> dict:
        own = job.flux or {}
        by_image = self.image_settings.get(Path(job.sif).name, {})
        merged = {**by_image, **own}
        unknown = sorted(set(merged) - set(IMAGE_SETTINGS))
        if unknown:
            raise HarnessError(f"flux executor: unknown image setting(s): {', '.join(unknown)}")
        return merged

    # -- the host as a job of this instance sees it ------------------------------------------
    def shell_pmi(self) -> list[str]:
        """The shell's PMI choices a job of the instance gets (the instance's plugin path when
        it answers, else this flux-core's built-in one)."""
        bindings()
        pluginpath = None
        with contextlib.suppress(HarnessError, OSError):
            pluginpath = self.handle().attr_get("conf.shell_pluginpath")
        return shell_pmi_plugins(pluginpath or builtin("shell_pluginpath"))

    def describe_host(self, host: dict[str, str]) -> dict[str, str]:
        """The host as a Flux job sees it: its MPI is the set of implementations whose bootstrap
        the shell's PMI plugins serve (harness/data/pmi.yaml: simple PMI and Flux's libpmi.so
        always, PMIx only with flux-pmix), and the PMI interfaces beside it. What mpirun on
        this machine is does not matter: no job of the instance uses it."""
        plugins = self.shell_pmi()
        served = launcher_plugins("flux")
        interfaces = list(dict.fromkeys(i for p in plugins for i in served.get(p, [])))
        return hostmod.with_launcher_mpi(
            host, bootstrappable("flux", plugins), {hostmod.PMI: ",".join(interfaces)}
        )

    def slots(self) -> int | None:
        return fa.instance_slots(self.handle(), self.cores_per_task)

    # -- the job ---------------------------------------------------------------------------
    def binds(self, job: Job) -> list[str]:
        """`--bind` specs of the host files the image's programs load: Flux's PMI library (and
        the libraries it needs), and in the bind model the host's MPI library. (The job's
        temporary directory is bound too, but it is no library.)"""
        if not self._preflighted:
            self.preflight()
        binds: list[str] = []
        if self._pmi is not None and self.settings(job).get("bind_pmi", True):
            binds += pmi_binds(self._pmi)
        if job.mpi_model == "bind":
            if self._mpi_lib is None:
                self._mpi_lib = host_library(SONAMES["OpenMPI"])
            binds.append(f"{self._mpi_lib.resolve()}:{self._mpi_lib}")
        return binds

    def command(self, job: Job) -> list[str]:
        """The task command: apptainer exec with the binds that MPI under Flux needs."""
        binds = self.binds(job)
        argv = [self._runtime, "exec", *(["--contain"] if self.contain else [])]
        # the job shell expands {{tmpdir}}: the job's own directory, Open MPI's shm backing dir
        for spec in [*binds, TMPDIR, *self.extra_binds]:
            argv += ["--bind", spec]
        if job.workdir:
            argv += ["--pwd", job.workdir]
        argv += [*job.runtime_options, str(job.sif), *job.command]
        return argv

    def preview(self, job: Job) -> str:
        """The job as `flux submit` would take it (a dry run)."""
        shape = ["flux", "submit", f"--ntasks={job.np}", f"--cores-per-task={self.cores_per_task}"]
        if self.nodes:
            shape.append(f"--nodes={self.nodes}")
        shape.append(f"--time-limit={float(job.timeout_s):g}s")
        for key, value in (self.settings(job).get("shell_options") or {}).items():
            shape.append(f"--setopt={key}={json.dumps(value)}")
        return shlex.join([*shape, "--", *self.command(job)])

    def jobspec(self, job: Job, name: str | None = None):
        command = self.command(job)  # preflights first: the PMI library is known after it
        settings = self.settings(job)
        pmi = self._pmi if settings.get("bind_pmi", True) else None
        env = job_environment(pmi, settings.get("env") or {})
        files = self.output == "file"
        js = jobspec_for(
            command,
            num_tasks=job.np,
            cores_per_task=self.cores_per_task,
            num_nodes=self.nodes,
            duration=float(job.timeout_s),
            environment=env,
            cwd=os.getcwd(),
            name=name or job_name(Path(job.stdout)),
            stdout=str(Path(job.stdout).resolve()) if files else None,
            stderr=str(Path(job.stderr).resolve()) if files else None,
        )
        for key, value in (settings.get("shell_options") or {}).items():
            js.setattr_shell_option(str(key), value)
        return js

    def run(self, job: Job) -> JobResult:
        return self._core.run(job)

    def cancel_all(self) -> None:
        """Cancel every job in flight and wait until Flux says each is inactive."""
        self._core.cancel_all()

    # -- the lifecycle's backend --------------------------------------------------------------
    def prepare(self, job: Job, name: str) -> core.Prepared:
        js = self.jobspec(job, name)
        if self.output == "file":
            # a resumed run reuses the file names: what an earlier attempt left is not this job's
            for path in (Path(job.stdout), Path(job.stderr)):
                path.unlink(missing_ok=True)
        argv = list(js.tasks[0]["command"])
        journal = {"uri": self._target()}
        return core.Prepared(name, argv, js, [], self.binds(job), self._runtime, journal)

    def submit(self, prepared: core.Prepared) -> tuple[str, list[core.Event]]:
        flux, h = bindings(), self.handle()
        future = None
        try:
            future = flux.job.submit_async(h, prepared.native)
            jobid = flux.job.JobID(fa.get(h, future, "get_id"))
        except OSError as exc:
            if exc.errno == errno.ETIMEDOUT:  # it may exist: a rerun looks for it by name
                raise core.Unanswered("flux executor: submit did not answer") from None
            raise core.Refused(f"flux executor: submit refused: {fa.why(exc)}") from None
        except BaseException:  # interrupted: the id comes with the answer, within ms
            if future is not None:
                with contextlib.suppress(OSError):
                    found = fa.get(h, future, "get_id", timeout=CANCEL_WAIT_S)
                    fa.cancel(h, [found], "harness: the run was interrupted")
            raise
        self._local.watchers[jobid.f58] = flux.job.event_watch_async(h, jobid)
        return jobid.f58, []

    def poll(self, jobid: str, until: float | None) -> list[core.Event]:
        h, watcher = self.handle(), self._local.watchers[jobid]
        left = fa.SLICE_S if until is None else min(fa.SLICE_S, until - time.monotonic())
        try:
            if not fa.wait(h, watcher, left):
                return []
            with fa.signals_kept(h):
                ev = watcher.get_event()
        except (OSError, RuntimeError) as exc:
            # RuntimeError: flux-core 0.88's bindings read a NULL event when the connection drops
            return [self._lost(h, jobid, watcher, exc)]
        if ev is None:
            del self._local.watchers[jobid]
            return [core.Event(core.ENDED)]
        self._states[jobid] = fe.state_after(self._states.get(jobid, "NEW"), ev.name, ev.context)
        return [fe.translate(jobid, ev.name, ev.timestamp, ev.context)]

    def _lost(self, h, jobid: str, watcher, exc: BaseException) -> core.Event:
        gone = fa.unreachable(h)
        self._local.watchers.pop(jobid, None)
        if gone is not None:
            watcher.needs_cancel = False  # nothing to cancel on a dead connection
        return fe.lost(jobid, fa.why(exc), gone, self._target(), time.time())

    def waiting(self, jobid: str) -> tuple[str, str]:
        """The job's state in job-list (a held job, a dependency), else from its eventlog."""
        flux, h = bindings(), self.handle()
        state = self._states.get(jobid, "NEW")
        with contextlib.suppress(OSError):
            rpc = flux.job.job_list_id(h, flux.job.JobID(jobid), attrs=["state"])
            state = fa.get(h, rpc, "get_jobinfo").state or state
        return state, fe.waiting(state)

    def cancel(self, jobids: Sequence[str], why: str) -> None:
        flux = bindings()
        fa.cancel(self.handle(), [int(flux.job.JobID(j)) for j in jobids], f"harness: {why}")

    def find(self, entry: dict) -> list[str]:
        """The journal's jobs on its own instance; an instance that no longer answers took its
        jobs with it, and one that is not this run's gets a cancel there."""
        flux, mine = bindings(), entry.get("uri") == self._target()
        try:
            h = self.handle() if mine else connect(entry.get("uri"))
            ids = fa.journaled_ids(h, entry)
        except (HarnessError, OSError, ValueError):
            return []
        if not mine:
            fa.cancel(h, ids, "harness: left by an earlier run")
            return []
        return [flux.job.JobID(i).f58 for i in ids]

    def active(self, jobids: Collection[str]) -> set[str]:
        flux = bindings()
        ids = {int(flux.job.JobID(j)): j for j in jobids}
        return {ids[i] for i in fa.still_active(self.handle(), set(ids), 0.0)}

    def collect(self, jobid: str, job: Job, prepared: core.Prepared, trace) -> core.Collected:
        """The output, the instance's result, and the argv with the job's tmpdir as it was."""
        flux = bindings()
        lost = {e.get("name") for e in trace.events} & {"lost-instance", "lost-eventlog"}
        h = None if "lost-instance" in lost else self.handle()
        if h is not None and trace.ended and not lost:
            info = fa.get(h, flux.job.result_async(h, flux.job.JobID(jobid)), "get_info")
            result = {"name": "result", "result": info.result, "returncode": info.returncode}
            trace.events.append({**result, "jobid": jobid})
        kvs = self.output == "kvs"
        write_output(h, jobid, Path(job.stdout), Path(job.stderr), kvs, trace)
        tmpdir = None
        if h is not None and trace.started:
            env = self.settings(job).get("env") or {}
            tmpdir = job_tmpdir(h, jobid, env, self._rundirs)
        self._states.pop(jobid, None)
        argv = [a.replace(TMPDIR, tmpdir or "$FLUX_JOB_TMPDIR") for a in prepared.argv]
        return core.Collected(argv)
