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

Also here: `detach()` submits the harness itself as a Flux job and `status()` shows a run's
progress from its records.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
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
from harness.judge.faults import Fault
from harness.mpi import OPENMPI_ROOT_ENV, SONAMES, host_library
from harness.run import runtime
from harness.run.executors.base import Job, JobResult, Option
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
    """The `flux` package with its job module, or a HarnessError saying how to install it."""
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


def pmi_library_path() -> Path | None:
    """Flux's PMI-1 library (what the shell exports as FLUX_PMI_LIBRARY_PATH)."""
    if path := os.environ.get("FLUX_PMI_LIBRARY_PATH"):
        return Path(path)
    flux = shutil.which("flux")
    if flux is None:
        return None
    out = subprocess.run(
        [flux, "config", "builtin", "pmi_library_path"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    path = out.stdout.strip()
    return Path(path) if out.returncode == 0 and path else None


def pmi_binds(pmi: Path) -> list[str]:
    """Apptainer --bind specs that make `pmi` and the libraries it needs loadable in an image.

    A flux-core install keeps libpmi.so in LIB/flux/ and its siblings (libflux-taskmap,
    libflux-idset) in LIB/: bind LIB read-only at the same path. An install in a system
    directory is bound file by file (never over the image's own /usr/lib).
    """
    pmi = Path(pmi)
    lib = pmi.parent.parent if pmi.parent.name == "flux" else pmi.parent
    if str(lib) not in SYSTEM_LIB_DIRS and str(pmi.parent) not in SYSTEM_LIB_DIRS:
        return [f"{lib}:{lib}:ro"]
    files = [pmi.resolve()]
    out = subprocess.run(["ldd", str(pmi)], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        parts = line.split("=>")
        if len(parts) == 2 and "libflux-" in parts[0]:
            target = parts[1].split("(")[0].strip()
            if target and target != "not found":
                files.append(Path(target))
    # the real file at each name the loader looks up; order kept, duplicates dropped
    return list(dict.fromkeys(f"{f.resolve()}:{f}:ro" for f in files))


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
        self._preflighted = False
        self._lost: str | None = None  # why the instance is gone (set by any thread)

    # -- setup -----------------------------------------------------------------------------
    def preflight(self) -> None:
        self._check_not_lost()
        bindings()
        self._local.handle = connect(self.uri)
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

    def settings(self, job: Job) -> dict:
        own = getattr(job, "flux", None) or {}
        by_image = self.image_settings.get(Path(job.sif).name, {})
        merged = {**by_image, **own}
        unknown = sorted(set(merged) - set(IMAGE_SETTINGS))
        if unknown:
            raise HarnessError(f"flux executor: unknown image setting(s): {', '.join(unknown)}")
        return merged

    # -- the job ---------------------------------------------------------------------------
    def command(self, job: Job) -> list[str]:
        """The task command: apptainer exec with the binds that MPI under Flux needs."""
        if not self._preflighted:
            self.preflight()
        settings = self.settings(job)
        argv = [self._runtime, "exec"]
        if self.contain:
            argv.append("--contain")
        binds: list[str] = []
        if self._pmi is not None and settings.get("bind_pmi", True):
            binds += pmi_binds(self._pmi)
        binds.append("{{tmpdir}}")  # the job shell expands it; Open MPI's shm backing dir
        if job.mpi_model == "bind":
            lib = host_library(SONAMES["OpenMPI"])
            binds.append(f"{lib.resolve()}:{lib}")
        binds += list(self.extra_binds)
        for spec in binds:
            argv += ["--bind", spec]
        if job.workdir:
            argv += ["--pwd", job.workdir]
        argv += [str(job.sif), *job.command]
        return argv

    def jobspec(self, job: Job):
        flux = bindings()
        settings = self.settings(job)
        env = dict(os.environ)  # explicit: older flux-core starts jobs with an empty one
        env.update(OPENMPI_ROOT_ENV)
        env.update({str(k): str(v) for k, v in (settings.get("env") or {}).items()})
        kwargs = {}
        if self.output == "file":
            kwargs = {
                "output": str(Path(job.stdout).resolve()),
                "error": str(Path(job.stderr).resolve()),
            }
        js = flux.job.JobspecV1.from_command(
            self.command(job),
            num_tasks=job.np,
            cores_per_task=self.cores_per_task,
            num_nodes=self.nodes,
            duration=float(job.timeout_s),
            environment=env,
            cwd=os.getcwd(),
            name=f"harness-{Path(job.sif).stem}",
            **kwargs,
        )
        for key, value in (settings.get("shell_options") or {}).items():
            js.setattr_shell_option(str(key), value)
        return js

    def run(self, job: Job) -> JobResult:
        self._check_not_lost()
        flux = bindings()
        h = self.handle()
        js = self.jobspec(job)
        argv = list(js.tasks[0]["command"])
        if self.output == "file":
            # a resumed run reuses the file names: what an earlier attempt left is not this job's
            for path in (Path(job.stdout), Path(job.stderr)):
                path.unlink(missing_ok=True)
        try:
            jobid = flux.job.JobID(flux.job.submit(h, js))
        except OSError as exc:
            raise HarnessError(f"flux executor: submit refused: {_why(exc)}") from None
        trace = _Trace(jobid.f58)
        watcher = None
        reachable = True
        try:
            watcher = flux.job.event_watch_async(h, jobid)
            if self._follow(flux, h, jobid, watcher, trace):
                info = flux.job.result(h, jobid)
                trace.events.append(
                    {
                        "name": "result",
                        "result": info.result,
                        "returncode": info.returncode,
                        "jobid": jobid.f58,
                    }
                )
        except KeyboardInterrupt:
            flux.job.cancel(h, jobid, "harness interrupted")
            raise
        except (OSError, RuntimeError) as exc:
            # RuntimeError: flux-core 0.88's bindings read a NULL event when the connection drops
            reachable = self._follow_failed(flux, h, jobid, watcher, trace, exc)
        self._write_output(h, flux, jobid, job, trace, reachable)

        stamps = trace.stamps
        end = trace.lost_at
        exit_code, sig = (None, None) if trace.status is None else _wait_status(trace.status)
        timed_out = any(e["context"].get("type") == "timeout" for e in trace.exceptions)
        fault = trace.fault
        cancels = [e for e in trace.exceptions if e["context"].get("type") == "cancel"]
        if fault is None and cancels:
            # not cancelled by this harness (its own cancels set a fault first): someone else
            note = cancels[0]["context"].get("note") or "no note"
            fault = Fault("cancelled", f"flux: job {jobid.f58} cancelled by another user: {note}")
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
        )

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
            if until is not None and not _ready(watcher, until):
                if drain_by is not None:
                    return False
                self._cancel_unstarted(flux, h, jobid, trace)
                drain_by = time.monotonic() + DRAIN_TIMEOUT_S
                continue
            ev = watcher.get_event()
            if ev is None:
                return True
            trace.add(ev)

    def _cancel_unstarted(self, flux, h, jobid, trace: _Trace) -> None:
        state = trace.state
        try:
            info = flux.job.get_job(h, jobid)  # job-list's view: a held job, a dependency
            state = (info or {}).get("state") or state
        except OSError:
            pass
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
        with contextlib.suppress(OSError):
            flux.job.cancel(h, jobid, f"harness: no start within {limit}")

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
            with contextlib.suppress(OSError):
                flux.job.cancel(h, jobid, "harness: lost the job's eventlog")
            return True
        if watcher is not None:
            watcher.needs_cancel = False  # nothing to cancel on a dead connection
        uri = self.uri or os.environ.get("FLUX_URI")
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


def _ready(watcher, until: float) -> bool:
    """Wait (in the reactor, no polling) for the watcher's next event until the monotonic time
    `until`; False when none came."""
    try:
        watcher.wait_for(max(0.0, until - time.monotonic()))
    except OSError as exc:
        if exc.errno == errno.ETIMEDOUT:
            return False
        raise
    return True


def _unreachable(h) -> str | None:
    """None when the instance behind `h` answers a ping, else why not."""
    try:
        h.rpc("broker.ping", {}).wait_for(PING_TIMEOUT_S).get()
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
    js = flux.job.JobspecV1.from_command(
        command,
        num_tasks=1,
        cores_per_task=cores,
        environment=env,
        cwd=os.getcwd(),
        name="harness-run",
        output=str(outdir / "flux-harness-{{id}}.log"),
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
