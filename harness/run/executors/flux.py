"""The Flux executor: each iteration is one Flux job, submitted and followed through the bindings.

The job is `apptainer exec [binds] [--pwd W] IMAGE.sif CMD...` with `np` tasks: the Flux shell
starts the ranks (PMI simple by default) and the image's MPI finds Flux's PMI library through
FLUX_PMI_LIBRARY_PATH (Open MPI 4) or the PMI wire protocol (MPICH). That library and its sibling
libraries are bound into the container, with the job's temporary directory (Open MPI's
shared-memory backing directory). The harness never schedules: it submits a jobspec (tasks, cores
per task, optional nodes, a duration limit) and Flux places it.

Everything the result holds comes from the job's eventlog: the exit code from the `finish`
event's wait status (a signal as 128+n), exceptions (type, severity, note) and the timestamps of
submit, alloc, start and finish (queue time and run time are separate).

Faults are results, not crashes: a job with no `start` event within `start_timeout_s` of its
submission (waiting for resources, a dependency, or held) is cancelled, and an instance lost while
a job is followed (broker killed, connection closed) ends that job's result; either way the
result carries a typed Fault (start-timeout, lost-instance; a cancel by someone else: cancelled)
and the exit code is unknown. After
a loss, the next run() raises a HarnessError: the run stops and a rerun against a new instance
resumes from the records.

No job outlives its harness: every wait on the instance runs in short slices with the
handle's reactor marked as running (the bindings' blocking waits otherwise set SIGINT to its
default action while they block), so Ctrl-C and SIGTERM reach Python's handlers within a slice;
the run's `cancel_all()` then cancels every job in flight and waits until Flux says it is
inactive. Each iteration's job is journaled next to its logs (`iter-NNNN.flux-job`: its name
before submission, its id as soon as it exists), so a rerun after kill -9 cancels what a killed
harness left and waits until it is inactive before it submits anything.

The host as a Flux job sees it (`describe_host`): the MPI implementations whose bootstrap the
shell's PMI plugins serve (harness/data/pmi.yaml: simple PMI, and Flux's libpmi.so through
FLUX_PMI_LIBRARY_PATH, always; PMIx only with the flux-pmix shell plugin installed).

Also here: `detach()` submits the harness itself as a Flux job and `status()` shows a run's
progress from its records.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from harness.errors import HarnessError
from harness.files import atomic_write
from harness.judge.faults import Fault
from harness.mpi import OPENMPI_ROOT_ENV, SONAMES, bootstrappable, host_library, launcher_plugins
from harness.run import flux_view, runtime
from harness.run.executors.base import Job, JobResult, LeftoverSweep, Option
from harness.select import host as hostmod
from harness.select.manifest import FLUX_SETTINGS as IMAGE_SETTINGS

# Directories never bound whole into a container: they hold the image's own C library.
SYSTEM_LIB_DIRS = {
    "/lib",
    "/lib64",
    "/usr/lib",
    "/usr/lib64",
    "/usr/local/lib",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
}
DETACH_FILE = "flux-detached.json"  # the detached harness jobs of an outdir, one per line

# Job state after each main-eventlog event that changes it (RFC 21), for the start timeout line.
_STATE_AFTER = {
    "submit": "NEW",
    "validate": "DEPEND",
    "depend": "PRIORITY",
    "priority": "SCHED",
    "alloc": "RUN",
    "finish": "CLEANUP",
    "clean": "INACTIVE",
}
_WAITING_FOR = {
    "NEW": "not validated",
    "DEPEND": "waiting for a dependency",
    "PRIORITY": "waiting for a priority",
    "SCHED": "waiting for resources, or held",
    "RUN": "allocated, the job shell did not start",
}
PING_TIMEOUT_S = 10.0  # how long an instance may take to answer before it counts as lost
DRAIN_TIMEOUT_S = 30.0  # how long a cancelled job may take to reach the end of its eventlog
RPC_TIMEOUT_S = 60.0  # how long one request (submit, cancel, a lookup) may take
SLICE_S = 0.2  # the longest a wait blocks in C: Python's signal handlers run between slices
CANCEL_WAIT_S = 10.0  # how long cancel_all() waits for the cancelled jobs to become inactive
GONE_WAIT_S = 60.0  # how long a rerun waits for the jobs it cancelled for a killed harness
JOURNAL_SUFFIX = ".flux-job"  # next to an iteration's logs: its job's name, then its id
TMPDIR = "{{tmpdir}}"  # the shell's template for the job's temporary directory


def install_hint() -> str:
    """How to make `import flux` work, with the running instance's version and path if known."""
    hint = "pip install flux-python==<the instance's flux-core version>"
    flux = shutil.which("flux")
    if flux is None:
        return hint + " (or put the flux-core install's python directory on PYTHONPATH)"
    version = ""
    try:
        out = subprocess.run([flux, "version"], capture_output=True, text=True, timeout=20).stdout
        for line in out.splitlines():
            if line.startswith("libflux-core:"):
                version = line.split(":", 1)[1].strip()
        env = subprocess.run([flux, "env"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return hint
    pypath = ""
    for line in env.splitlines():
        if line.startswith("export PYTHONPATH="):
            pypath = line.split("=", 1)[1].strip().strip('"')
    if version:
        hint = f"pip install flux-python=={version}"
    if pypath:
        hint += f", or export PYTHONPATH={pypath} (what `flux env` prints)"
    return hint


def bindings():
    """The `flux` package with its job module, or a HarnessError saying how to install it.
    A Flux Operator pod's view (or `flux env` inside `flux start`) is found first."""
    flux_view.ensure()
    try:
        import flux
        import flux.job
        import flux.job.output  # noqa: F401  (job_output)
    except ImportError as exc:
        missing = exc.name or str(exc)
        if missing in ("flux", "_flux") or (missing or "").startswith(("flux.", "_flux.")):
            raise HarnessError(
                f"flux executor: the Flux Python bindings are not importable ({exc}); "
                + install_hint()
            ) from None
        raise HarnessError(
            f"flux executor: the Flux Python bindings need the module {missing!r}: "
            f"pip install {'cffi' if missing == '_cffi_backend' else missing}"
        ) from None
    return flux


def connect(uri: str | None = None):
    """A handle on the instance at `uri` (default: FLUX_URI, else the system instance)."""
    flux = bindings()
    target = uri or os.environ.get("FLUX_URI")
    try:
        handle = flux.Flux(uri) if uri else flux.Flux()
        handle.attr_get("size")  # one RPC: a socket that accepts but no broker behind it fails
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        if target:
            raise HarnessError(
                f"flux executor: the Flux instance at {target} is not reachable ({why})"
            ) from None
        raise HarnessError(
            "flux executor: no Flux instance reachable (FLUX_URI is unset and no system "
            f"instance answers: {why}); run inside `flux start` or `flux proxy URI`"
        ) from None
    return handle


def builtin(key: str) -> str | None:
    """flux-core's compiled-in configuration value `key` (what `flux config builtin KEY` prints),
    from the bindings' own libflux-core; None without the bindings or for an unknown key."""
    try:
        from flux.core.inner import ffi, lib
    except ImportError:
        return None
    try:
        value = lib.flux_conf_builtin_get(key.encode(), lib.FLUX_CONF_AUTO)
    except AttributeError:  # bindings built without it
        return None
    return ffi.string(value).decode() if value != ffi.NULL else None


def jobspec_for(
    command: Sequence[str],
    *,
    num_tasks: int,
    cores_per_task: int = 1,
    num_nodes: int | None = None,
    duration: float | None = None,
    environment: Mapping[str, str],
    cwd: str,
    name: str,
    stdout: str | None = None,
    stderr: str | None = None,
):
    """A JobspecV1 that every flux-core from 0.55 on accepts.

    flux-core 0.55.0's `JobspecV1.from_command` takes only the resource shape (command,
    num_tasks, cores_per_task, gpus_per_task, num_nodes, exclusive: src/bindings/python/flux/
    job/Jobspec.py at tag v0.55.0); later releases also take duration, environment, cwd, name,
    output, error ... as keywords. Both have the setters and `setattr` used here, so the same
    code builds the same jobspec on either, whatever the installed bindings' version."""
    flux = bindings()
    js = flux.job.JobspecV1.from_command(
        list(command), num_tasks=num_tasks, cores_per_task=cores_per_task, num_nodes=num_nodes
    )
    if duration:
        js.duration = float(duration)
    js.environment = dict(environment)  # explicit: 0.55 starts a job with an empty one
    js.cwd = cwd
    js.setattr("system.job.name", name)
    if stdout is not None:
        js.stdout = stdout
    if stderr is not None:
        js.stderr = stderr
    return js


def instance_version(handle) -> str | None:
    """The flux-core version of the instance's broker (its `version` attribute)."""
    try:
        return str(handle.attr_get("version"))
    except (OSError, KeyError):
        return None


def pmi_library_path() -> Path | None:
    """Flux's PMI-1 library (what the shell exports as FLUX_PMI_LIBRARY_PATH)."""
    if path := os.environ.get("FLUX_PMI_LIBRARY_PATH"):
        return Path(path)
    path = builtin("pmi_library_path")
    return Path(path) if path else None


def pmi_binds(pmi: Path) -> list[str]:
    """Apptainer --bind specs that make `pmi` and the libraries it needs loadable in an image.

    A flux-core install keeps libpmi.so in LIB/flux/ and its siblings (libflux-taskmap,
    libflux-idset) in LIB/: bind LIB read-only at the same path, and the library itself by
    name (a bind inside that bind, so that the spec names the file the image's MPI loads: the
    loader check of a failed job resolves it in the image). An install in a system directory is
    bound file by file (never over the image's own /usr/lib).
    """
    pmi = Path(pmi)
    lib = pmi.parent.parent if pmi.parent.name == "flux" else pmi.parent
    if str(lib) not in SYSTEM_LIB_DIRS and str(pmi.parent) not in SYSTEM_LIB_DIRS:
        return [f"{lib}:{lib}:ro", f"{pmi}:{pmi}:ro"]
    files = [pmi.resolve()]
    out = subprocess.run(["ldd", str(pmi)], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        parts = line.split("=>")
        if len(parts) == 2 and "libflux-" in parts[0]:
            target = parts[1].split("(")[0].strip()
            if target and target != "not found":
                files.append(Path(target))
    # the real file at each name the loader looks up; order kept, duplicates dropped
    return list(dict.fromkeys(f"{f.resolve()}:{f}:ro" for f in [pmi, *files[1:]]))


def shell_pmi_plugins(pluginpath: str | None) -> list[str]:
    """The Flux shell's PMI choices (`-o pmi=NAME`) a job of the instance can use: `simple`
    (built into the shell: the PMI-1 wire protocol and libpmi.so) always, `pmix` when the
    flux-pmix shell plugin is on the shell's plugin path (it installs DIR/pmix/pmix.so)."""
    plugins = ["simple"]
    for entry in (pluginpath or "").split(":"):
        where = Path(entry) if entry else None
        if where and (any(where.glob("pmix*.so")) or any(where.glob("pmix/*.so"))):
            plugins.append("pmix")
            break
    return plugins


def _wait_status(status: int) -> tuple[int, int | None]:
    """(exit code, signal) of a wait status; a signal is reported as 128+n."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return 128 + sig, sig
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status), None
    return status, None


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
    needs_sif: bool = field(default=True, init=False)
    version: str | None = field(default=None, init=False)  # the instance's, after preflight
    OPTIONS: ClassVar[tuple[Option, ...]] = (
        Option("--flux-uri", "uri", "the Flux instance (default: $FLUX_URI)"),
        Option("--nodes", "nodes", "spread each job over exactly this many nodes", {"type": int}),
        Option(
            "--cores-per-task", "cores_per_task", "cores Flux allocates per rank", {"type": int}
        ),
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
        self._local = threading.local()
        self._runtime: str | None = None
        self._pmi: Path | None = None
        self._mpi_lib: Path | None = None
        self._preflighted = False
        self._lost: str | None = None  # why the instance is gone (set by any thread)
        self._lock = threading.Lock()
        self._live: dict[int, Path] = {}  # job id -> its journal, of the jobs in flight
        self._interrupted = False  # cancel_all() ran (or a run() was interrupted): no new job
        self._leftovers = LeftoverSweep("*" + JOURNAL_SUFFIX)
        self._rundirs: dict[int, str] = {}  # broker rank -> its rundir

    # -- setup -----------------------------------------------------------------------------
    def preflight(self) -> None:
        self._check_not_lost()
        bindings()
        self._local.handle = connect(self.uri)
        self.version = f"flux-core {instance_version(self._local.handle) or 'unknown'}"
        self._runtime = runtime.executable()
        self._pmi = pmi_library_path()
        self._preflighted = True

    def _check_not_lost(self) -> None:
        if self._lost is not None:
            raise HarnessError(self._lost)

    def handle(self):
        """This thread's handle: a flux handle is not shared between threads."""
        h = getattr(self._local, "handle", None)
        if h is None:
            h = self._local.handle = connect(self.uri)
        return h

    def _target(self) -> str | None:
        return self.uri or os.environ.get("FLUX_URI")

    def settings(self, job: Job) -> dict:
        own = getattr(job, "flux", None) or {}
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
        argv = [self._runtime, "exec"]
        if self.contain:
            argv.append("--contain")
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
        env = dict(os.environ)  # explicit: older flux-core starts jobs with an empty one
        env.update(OPENMPI_ROOT_ENV)
        if self._pmi is not None and settings.get("bind_pmi", True):
            # flux-core 0.55's job shell does not export it (later ones do): a job submitted
            # from outside `flux start` (a `kubectl exec` shell) would leave Open MPI without
            # the library it loads for PMI
            env["FLUX_PMI_LIBRARY_PATH"] = str(self._pmi)
        env.update({str(k): str(v) for k, v in (settings.get("env") or {}).items()})
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
        self._check_not_lost()
        flux = bindings()
        h = self.handle()
        stdout = Path(job.stdout)
        self._sweep(stdout.parent)
        journal = journal_path(stdout)
        if journal.exists():  # this iteration's job of an earlier attempt
            self._cancel_journaled([journal], GONE_WAIT_S)
        name = job_name(stdout)
        js = self.jobspec(job, name)
        argv = list(js.tasks[0]["command"])
        if self.output == "file":
            # a resumed run reuses the file names: what an earlier attempt left is not this job's
            for path in (Path(job.stdout), Path(job.stderr)):
                path.unlink(missing_ok=True)
        with self._lock:
            if self._interrupted:
                raise HarnessError("flux executor: the run is being interrupted: no new job")
        # journaled before the submission: a harness killed before it returns leaves the name
        entry = {"name": name, "jobid": None, "uri": self._target()}
        atomic_write(journal, json.dumps(entry).encode())
        submitted = jobid = None
        try:
            try:
                submitted = flux.job.submit_async(h, js)
                jobid = flux.job.JobID(_get(h, submitted, "get_id"))
            except OSError as exc:
                if exc.errno == errno.ETIMEDOUT:  # it may exist: a rerun looks for it by name
                    raise HarnessError("flux executor: submit did not answer") from None
                journal.unlink(missing_ok=True)
                raise HarnessError(f"flux executor: submit refused: {_why(exc)}") from None
            with self._lock:
                self._live[int(jobid)] = journal
                late = self._interrupted
            atomic_write(journal, json.dumps({**entry, "jobid": jobid.f58}).encode())
        except HarnessError:
            raise
        except BaseException:
            # interrupted mid-submit (or before the id was journaled): the job may exist. Its id
            # comes with the submission's answer (a few ms); failing that the journal names
            # it. Cancel it and wait until it is inactive.
            with self._lock:
                self._interrupted = True
            if jobid is None and submitted is not None:
                with contextlib.suppress(OSError):
                    jobid = flux.job.JobID(_get(h, submitted, "get_id", timeout=CANCEL_WAIT_S))
            if jobid is not None:
                self._stop(h, {int(jobid): journal}, CANCEL_WAIT_S)
            else:
                self._cancel_journaled([journal], CANCEL_WAIT_S, strict=False)
            raise
        if late:  # cancel_all() ran while this job was being submitted: it does not run
            self._stop(h, {int(jobid): journal}, CANCEL_WAIT_S)
            raise HarnessError("flux executor: the run is being interrupted: no new job")
        trace = _Trace(jobid.f58)
        watcher = None
        reachable = True
        ended = False  # the job is inactive (or gone with its instance): its journal goes
        try:
            watcher = flux.job.event_watch_async(h, jobid)
            if self._follow(flux, h, jobid, watcher, trace):
                ended = True
                info = _get(h, flux.job.result_async(h, jobid), "get_info")
                trace.events.append(
                    {
                        "name": "result",
                        "result": info.result,
                        "returncode": info.returncode,
                        "jobid": jobid.f58,
                    }
                )
        except (OSError, RuntimeError) as exc:
            # RuntimeError: flux-core 0.88's bindings read a NULL event when the connection drops
            reachable = self._follow_failed(flux, h, jobid, watcher, trace, exc)
            ended = not reachable or not _still_active(h, {int(jobid)}, CANCEL_WAIT_S)
        except BaseException:
            # Ctrl-C, SIGTERM, cancel_all() in another thread: the job does not outlive the run.
            # It stays in flight: cancel_all() waits until it is inactive and removes its journal.
            with self._lock:
                self._interrupted = True
            with contextlib.suppress(Exception):
                _cancel(flux, h, [int(jobid)], "harness: the run was interrupted")
            raise
        with self._lock:
            self._live.pop(int(jobid), None)
        if ended:
            journal.unlink(missing_ok=True)
        self._write_output(h, flux, jobid, job, trace, reachable)
        if "start" in trace.stamps and reachable:
            tmpdir = self._job_tmpdir(flux, h, jobid, job)
        else:
            tmpdir = None
        argv = [a.replace(TMPDIR, tmpdir or "$FLUX_JOB_TMPDIR") for a in argv]

        stamps = trace.stamps
        end = trace.lost_at
        exit_code, sig = (None, None) if trace.status is None else _wait_status(trace.status)
        timed_out = any(e["context"].get("type") == "timeout" for e in trace.exceptions)
        fault = trace.fault
        cancels = [e for e in trace.exceptions if e["context"].get("type") == "cancel"]
        if fault is None and cancels:
            # not cancelled by this harness (its own cancels set a fault first): someone else
            context = cancels[0]["context"]
            note = context.get("note") or "no note"
            who = f"user {context['userid']}" if "userid" in context else "someone"
            fault = Fault(
                "cancelled",
                f"flux: job {jobid.f58} cancelled by {who}, not by this harness: {note}",
            )
        submit = stamps.get("submit")
        began = stamps.get("alloc")
        end_queue = began if began is not None else stamps.get("clean", end or submit)
        queue_s = max(0.0, end_queue - submit) if submit is not None else 0.0
        run_s = 0.0
        if "start" in stamps:
            stop = stamps.get("finish", stamps.get("clean", end or stamps["start"]))
            run_s = max(0.0, stop - stamps["start"])
        return JobResult(
            argv=argv,
            exit_code=exit_code,
            signal=sig,
            timed_out=timed_out,
            queue_s=queue_s,
            run_s=run_s,
            events=trace.events,
            fault=fault,
            binds=self.binds(job),
            runtime=self._runtime,
        )

    def _poll_interrupted(self) -> None:
        """Between two slices of a wait: a thread stops following once the run is interrupted
        (its job is cancelled on the way out)."""
        if self._interrupted:
            raise HarnessError("flux executor: the run is being interrupted")

    def _follow(self, flux, h, jobid, watcher, trace: _Trace) -> bool:
        """Read the job's eventlog into `trace` until it ends (True). A job with no `start` event
        within start_timeout_s is cancelled; its eventlog is then read until it ends, for at most
        DRAIN_TIMEOUT_S (False when it did not end)."""
        start_by = None
        if self.start_timeout_s:
            start_by = time.monotonic() + self.start_timeout_s
        drain_by = None
        while True:
            until = drain_by
            if until is None and "start" not in trace.stamps and trace.state in _WAITING_FOR:
                until = start_by
            left = None if until is None else until - time.monotonic()
            if not _wait(h, watcher, left, self._poll_interrupted):
                if drain_by is not None:
                    return False
                self._cancel_unstarted(flux, h, jobid, trace)
                drain_by = time.monotonic() + DRAIN_TIMEOUT_S
                continue
            with _signals_kept(h):
                ev = watcher.get_event()
            if ev is None:
                return True
            trace.add(ev)

    def _cancel_unstarted(self, flux, h, jobid, trace: _Trace) -> None:
        state = trace.state
        with contextlib.suppress(OSError):  # job-list's view: a held job, a dependency
            info = _get(h, flux.job.job_list_id(h, jobid, attrs=["state"]), "get_jobinfo")
            state = info.state or state
        limit = f"{self.start_timeout_s:g} s"
        waiting = _WAITING_FOR.get(state)
        trace.fault = Fault(
            "start-timeout",
            f"flux executor: job {jobid.f58} failed to start within {limit} "
            f"(state {state}{': ' + waiting if waiting else ''}): cancelled",
        )
        trace.events.append(
            {
                "name": "start-timeout",
                "timestamp": time.time(),
                "timeout_s": self.start_timeout_s,
                "state": state,
                "jobid": jobid.f58,
            }
        )
        # a failed cancel (a dead instance) shows when the eventlog is read on
        _cancel(flux, h, [int(jobid)], f"harness: no start within {limit}")

    def _follow_failed(self, flux, h, jobid, watcher, trace: _Trace, exc: Exception) -> bool:
        """The eventlog could not be followed: record why in `trace`; False when the instance is
        gone (the next run() then raises), True when it still answers (the job is cancelled)."""
        trace.lost_at = time.time()
        gone = _unreachable(h)
        if gone is None:
            why = _why(exc)
            trace.fault = Fault(
                "lost-instance", f"flux executor: lost the eventlog of job {jobid.f58}: {why}"
            )
            trace.events.append({"name": "lost-eventlog", "timestamp": trace.lost_at, "error": why})
            _cancel(flux, h, [int(jobid)], "harness: lost the job's eventlog")
            return True
        if watcher is not None:
            watcher.needs_cancel = False  # nothing to cancel on a dead connection
        uri = self._target()
        target = f"Flux instance at {uri}" if uri else "Flux system instance"
        trace.fault = Fault(
            "lost-instance",
            f"flux executor: lost the Flux instance while following job {jobid.f58}: {gone}",
        )
        trace.events.append(
            {"name": "lost-instance", "timestamp": trace.lost_at, "error": gone, "uri": uri}
        )
        self._lost = (
            f"flux executor: the {target} is gone or unreachable (lost while following job "
            f"{jobid.f58}: {gone}); the iterations recorded so far are kept: rerun the same "
            f"command against a running instance to continue"
        )
        return False

    def _job_tmpdir(self, flux, h, jobid, job: Job) -> str | None:
        """FLUX_JOB_TMPDIR of the job's shell rank 0, as the shell made it (src/shell/tmpdir.c
        of flux-core): `jobtmp-0-ID` in the rundir of the broker that ran shell rank 0 (the
        exec eventlog's `shell.init` names it), or in $TMPDIR (default /tmp) when the job's
        user does not own the instance. Other nodes' ranks had their own; None if unknown."""
        leader = watcher = None
        try:
            watcher = flux.job.event_watch_async(h, jobid, "guest.exec.eventlog")
            deadline = time.monotonic() + 10.0
            while _wait(h, watcher, deadline - time.monotonic()):
                with _signals_kept(h):
                    ev = watcher.get_event()
                if ev is None:
                    break
                if ev.name == "shell.init":
                    leader = int(ev.context.get("leader-rank", 0))
            if watcher.needs_cancel:  # not at its end within the time given
                watcher.cancel(stop=True)
            if leader is None:
                return None
            if int(h.attr_get("security.owner")) != os.getuid():
                env = self.settings(job).get("env") or {}
                base = env.get("TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
            else:
                if leader not in self._rundirs:
                    reply = _get(h, h.rpc("attr.get", {"name": "rundir"}, nodeid=leader), "get")
                    self._rundirs[leader] = reply["value"]
                base = self._rundirs[leader]
        except (OSError, RuntimeError, KeyError, ValueError):
            return None
        return f"{base}/jobtmp-0-{jobid.f58}"

    def _write_output(self, h, flux, jobid, job: Job, trace: _Trace, reachable: bool) -> None:
        """Make job.stdout/job.stderr hold the job's output, then its exceptions as `flux job
        attach` prints them (the evidence Flux itself gives for a failed start).

        The executor's own fault line (start timeout, lost instance) heads job.stderr, before
        what the job wrote: it is the cause, and what the job's shell printed on the way out
        ("flux-shell[0]: ERROR: flux_reactor_run" when its broker dies) is its consequence; the
        classifier takes the first suspicious line as the evidence."""
        stdout, stderr = Path(job.stdout), Path(job.stderr)
        tail: list[str] = []
        if self.output == "kvs":
            try:
                if not reachable:
                    raise OSError("the instance is gone")
                with _signals_kept(h):
                    out = flux.job.output.job_output(h, jobid)
                stdout.write_text(out.stdout)
                stderr.write_text(out.stderr + out.log)
            except (OSError, flux.job.JobException):
                stdout.write_text("")
                stderr.write_text("")
        else:
            missing = [p for p in (stdout, stderr) if not p.exists()]
            for path in missing:
                path.write_text("")
            if missing and reachable and "start" in trace.stamps:
                # written on a node that does not share them
                tail.append(
                    f"flux executor: job {jobid.f58} ran but its output "
                    f"{' and '.join(map(str, missing))} is not visible here "
                    f"(outdir not shared with the job's nodes: use output 'kvs')"
                )
        t0 = trace.stamps.get("submit", 0.0)
        for e in trace.exceptions:
            c = e["context"]
            tail.append(
                f"{e['timestamp'] - t0:.3f}s: job.exception {jobid.f58} "
                f"type={c.get('type')} severity={c.get('severity')} {c.get('note', '')}"
            )
        if tail:
            with stderr.open("a", encoding="utf-8") as fh:
                fh.write("".join(line + "\n" for line in tail))

    # -- no job outlives the run -------------------------------------------------------------
    def cancel_all(self) -> None:
        """Cancel every job in flight and wait (CANCEL_WAIT_S at most) until Flux says each is
        inactive; the journals of those that are go. No run() submits after this."""
        with self._lock:
            self._interrupted = True
            live = dict(self._live)
        if not live:
            return
        try:
            h = self.handle()
        except HarnessError:  # the instance is gone, and its jobs with it
            return
        self._stop(h, live, CANCEL_WAIT_S)

    def _stop(self, h, jobs: dict[int, Path], wait_s: float) -> set[int]:
        """Cancel `jobs` (id -> journal), wait until they are inactive; returns those still
        active after wait_s. An inactive job's journal goes, and it is no longer in flight."""
        flux = bindings()
        _cancel(flux, h, list(jobs), "harness: the run was interrupted")
        left = _still_active(h, set(jobs), wait_s)
        for jobid, journal in jobs.items():
            if jobid not in left:
                journal.unlink(missing_ok=True)
                with self._lock:
                    self._live.pop(jobid, None)
        return left

    def _sweep(self, directory: Path) -> None:
        self._leftovers(directory, lambda journals: self._cancel_journaled(journals, GONE_WAIT_S))

    def _cancel_journaled(self, journals: list[Path], wait_s: float, strict: bool = True) -> None:
        """Cancel the jobs the journals name (by id, or by name when the harness died before
        it knew the id) and wait until they are inactive; then the journals go. With `strict`,
        a job still active after wait_s is a HarnessError (nothing new is submitted beside it).
        A journal of an instance that no longer answers goes: its jobs went with it."""
        flux = bindings()
        by_uri: dict[str | None, list[tuple[Path, dict]]] = {}
        for path in journals:
            try:
                entry = json.loads(path.read_text() or "{}")
            except (OSError, ValueError):
                entry = {}
            by_uri.setdefault(entry.get("uri"), []).append((path, entry))
        for uri, entries in by_uri.items():
            try:
                h = self.handle() if uri == self._target() else connect(uri)
            except HarnessError:
                h = None
            jobs: dict[int, Path] = {}
            for path, entry in entries:
                if h is not None:
                    with contextlib.suppress(OSError, ValueError):
                        for jobid in _journaled_ids(h, entry):
                            jobs[jobid] = path
                if path not in jobs.values():
                    path.unlink(missing_ok=True)  # nothing of it is active
            if not jobs:
                continue
            left = self._stop(h, jobs, wait_s)
            if left and strict:
                shown = ", ".join(flux.job.JobID(j).f58 for j in sorted(left))
                raise HarnessError(
                    f"flux executor: job(s) left by an earlier run are still active {wait_s:g} s "
                    f"after flux cancel: {shown}"
                )


def journal_path(stdout: Path) -> Path:
    """The journal of an iteration (not of an attempt): a rerun finds what a killed harness
    left for that iteration."""
    return stdout.with_name(stdout.name.split(".", 1)[0] + JOURNAL_SUFFIX)


def job_name(stdout: Path) -> str:
    """The job's name: the mode's log directory and the attempt (unique per attempt), so that
    a job whose id was never journaled can still be found."""
    return f"harness-{stdout.parent.name}-{stdout.name.removesuffix('.out')}"


def _journaled_ids(h, entry: dict) -> list[int]:
    """The ids of the jobs a journal entry names: its id, else the active jobs of its name."""
    import flux.constants
    import flux.job

    if entry.get("jobid"):
        return [int(flux.job.JobID(entry["jobid"]))]
    if not entry.get("name"):
        return []
    rpc = flux.job.job_list(
        h, attrs=["state"], name=entry["name"], states=flux.constants.FLUX_JOB_STATE_ACTIVE
    )
    return [int(j["id"]) for j in _get(h, rpc, "get_jobs")]


def _cancel(flux, h, jobids: list[int], reason: str) -> None:
    """Cancel each job (one request each, all in flight at once); a job already inactive, or a
    dead instance, is no error here."""
    futures = []
    for jobid in jobids:
        with contextlib.suppress(OSError):
            futures.append(flux.job.cancel_async(h, jobid, reason))
    for future in futures:
        with contextlib.suppress(OSError):
            _get(h, future, "get")


def _still_active(h, jobids: set[int], wait_s: float) -> set[int]:
    """Those of `jobids` still active (in job-list, what `flux jobs` shows) after waiting up to
    wait_s for them to become inactive; a job the instance does not know is not active."""
    import flux.constants
    import flux.job

    deadline = time.monotonic() + wait_s
    left = set(jobids)
    while left:
        for jobid in sorted(left):
            try:
                rpc = flux.job.job_list_id(h, jobid, attrs=["state"])
                state = _get(h, rpc, "get_job", timeout=10.0)["state"]
            except FileNotFoundError:
                left.discard(jobid)
                continue
            except OSError as exc:
                if exc.errno == errno.ETIMEDOUT:  # not known here (e.g. another instance's)
                    left.discard(jobid)
                    continue
                return left  # the instance does not answer: nothing more to learn
            if state == flux.constants.FLUX_JOB_STATE_INACTIVE:
                left.discard(jobid)
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    return left


@dataclass
class _Trace:
    """What run() learns about one job from its eventlog (and the executor's own notes)."""

    jobid: str
    events: list[dict] = field(default_factory=list)
    stamps: dict[str, float] = field(default_factory=dict)
    exceptions: list[dict] = field(default_factory=list)
    status: int | None = None
    state: str = "NEW"
    fault: Fault | None = None  # what the executor itself saw go wrong
    lost_at: float | None = None

    def add(self, ev) -> None:
        entry = {"name": ev.name, "timestamp": ev.timestamp, "context": dict(ev.context)}
        if ev.name == "submit":
            entry["jobid"] = self.jobid
        self.events.append(entry)
        self.stamps.setdefault(ev.name, ev.timestamp)
        self.state = _STATE_AFTER.get(ev.name, self.state)
        if ev.name == "finish":
            self.status = int(ev.context.get("status", 0))
        elif ev.name == "exception":
            self.exceptions.append(entry)
            if int(ev.context.get("severity", 1)) == 0 and self.state != "INACTIVE":
                self.state = "CLEANUP"


def _why(exc: BaseException) -> str:
    """An OSError's text as Flux words it ("EPIPE: Broken pipe"), else the exception's."""
    if isinstance(exc, OSError):
        if exc.strerror:
            return exc.strerror
        if exc.errno:
            return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__


@contextlib.contextmanager
def _signals_kept(h):
    """The bindings' blocking calls are @interruptible: in the main thread, unless the handle's
    reactor runs, they set SIGINT to its default action while they block, so Ctrl-C kills the
    process at once (no handler, no cancel, the job runs on). Marked as in the reactor, they
    leave the handlers alone; every wait here is sliced, so the handlers run (KeyboardInterrupt,
    SIGTERM's Terminated) within SLICE_S."""
    with h.in_reactor():
        yield


def _wait(h, future, timeout: float | None, poll=None) -> bool:
    """Wait (in the reactor, no polling of the instance) until `future` is fulfilled: True, or
    False after `timeout` seconds (None: no limit). The wait runs in slices of SLICE_S: Python's
    signal handlers run between them, and so does `poll` (it may raise)."""
    deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
    while True:
        left = SLICE_S if deadline is None else min(SLICE_S, deadline - time.monotonic())
        try:
            with _signals_kept(h):
                future.wait_for(max(0.0, left))
            return True
        except OSError as exc:
            if exc.errno != errno.ETIMEDOUT:
                raise
        if poll is not None:
            poll()
        if deadline is not None and time.monotonic() >= deadline:
            return False


def _get(h, future, getter: str, timeout: float = RPC_TIMEOUT_S):
    """`future.<getter>()` once fulfilled, waited for in slices; OSError(ETIMEDOUT) when it is
    not fulfilled within `timeout`."""
    if not _wait(h, future, timeout):
        raise OSError(errno.ETIMEDOUT, f"no answer within {timeout:g} s")
    with _signals_kept(h):
        return getattr(future, getter)()


def _unreachable(h) -> str | None:
    """None when the instance behind `h` answers a ping, else why not."""
    try:
        _get(h, h.rpc("broker.ping", {}), "get", timeout=PING_TIMEOUT_S)
    except OSError as exc:
        if exc.errno == errno.ETIMEDOUT:
            return f"no answer within {PING_TIMEOUT_S:g} s"
        return _why(exc)
    return None


# -- detach / status -------------------------------------------------------------------------
def _strip_detach(argv: Sequence[str]) -> list[str]:
    return [a for a in argv if a != "--detach"]


def detach(
    argv: Sequence[str],
    outdir: Path,
    mode: str,
    iters: int,
    *,
    uri: str | None = None,
    cores: int = 1,
) -> str:
    """Submit `harness <argv>` (a `run` command line, --detach removed) as a Flux job of one
    task; returns its job id (f58). The harness job submits the iterations to the same
    instance. Its own output goes to OUTDIR/flux-harness-<id>.log, and OUTDIR/flux-detached.json
    records the job (with its mode and target) for `status()`."""
    flux = bindings()
    argv = _strip_detach(argv)
    outdir = Path(outdir).resolve()
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(f"outdir {outdir}: {exc.strerror}") from None
    h = connect(uri)
    command = [sys.executable, "-m", "harness.cli", *argv]
    env = dict(os.environ)
    js = jobspec_for(
        command,
        num_tasks=1,
        cores_per_task=cores,
        environment=env,
        cwd=os.getcwd(),
        name="harness-run",
        stdout=str(outdir / "flux-harness-{{id}}.log"),
    )
    try:
        jobid = flux.job.JobID(flux.job.submit(h, js))
    except OSError as exc:
        raise HarnessError(f"detach: submit refused: {exc.strerror or exc}") from None
    entry = {
        "jobid": jobid.f58,
        "mode": mode,
        "iters": iters,
        "argv": list(argv),
        "submitted": time.time(),
        "uri": uri or os.environ.get("FLUX_URI"),
    }
    with (outdir / DETACH_FILE).open("a") as fh:
        fh.write(json.dumps(entry) + "\n")
    return jobid.f58


def job_states(entries: list[dict]) -> dict[str, str]:
    """State of each detached harness job, when an instance is reachable (else nothing)."""
    if not entries:
        return {}
    try:
        flux = bindings()
        h = connect(None)
    except HarnessError:
        return {}
    states = {}
    for e in entries:
        try:
            info = flux.job.get_job(h, flux.job.JobID(e["jobid"]))
        except (OSError, ValueError):
            continue
        if info:
            state = info.get("state", "")
            if state == "INACTIVE":
                state = info.get("result", state)
            states[e["jobid"]] = state
    return states
