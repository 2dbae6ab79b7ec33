"""The Slurm executor: each iteration is one Slurm batch job, submitted and followed by the CLI.

    sbatch --parsable --job-name=harness-MODE-iter-N.ATTEMPT --ntasks=NP --time=MINUTES
           --output=STDOUT --error=STDERR --no-requeue [--partition P] [--account A]
           [--slurm-option ...] SCRIPT
    SCRIPT: #!/bin/bash
            exec srun --mpi=PLUGIN APPTAINER exec [--pwd W] [--bind HOST_LIBMPI] SIF CMD...

The ranks are started by srun (direct launch): the image's MPI bootstraps from the PMI the
chosen `--mpi` plugin serves. Which plugin serves which image is data (harness/data/pmi.yaml,
through harness.mpi): the image's MPI implementation and version are read from the SIF once
(the program its command runs, followed through wrapper scripts, the MPI library that program
links and the package that holds it; the same reading as `harness artifact create`, without
running the image) and cached per SIF file.

The job is followed with `scontrol show job -o ID` (about once a second); everything the result
holds comes from Slurm: the JobState decides (COMPLETED, FAILED, CANCELLED, TIMEOUT, NODE_FAIL,
...), never ExitCode alone (a cancel and a time limit both give 0:15); the exit code is srun's
(`exec` makes it the job's), a signal the S of `ExitCode=E:S`; queue time is StartTime -
SubmitTime and run time EndTime - StartTime (1 s resolution). Slurm's time limit
(`--time`, the harness's --timeout rounded up to whole minutes) comes up to ~30 s late, so the
harness also enforces --timeout itself: it scancels the job once it has run that long and
records `timed_out`. A job that has not started within --slurm-start-timeout is scancelled
(fault start-timeout); a job cancelled by someone else (CANCELLED that this harness did not ask
for, or PREEMPTED) is Fault("cancelled"); NODE_FAIL or BOOT_FAIL, or a job slurmctld no longer
knows, is Fault("lost-instance"). Each is an `infra` outcome, redone by a resume.

No orphans: before sbatch, the attempt's job name is journaled in logs/MODE/iter-N.slurm, and
the job id as soon as sbatch returns. The first job of a mode's log directory, in every run,
scancels what the journals there name (jobs a killed harness left) and waits until they are
gone from squeue before it submits anything; cancel_all() scancels every job in flight and
waits for them to leave squeue.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from harness import mpi
from harness.errors import HarnessError
from harness.files import atomic_write
from harness.judge.faults import Fault
from harness.run import runtime
from harness.run.executors.base import Job, JobResult, LeftoverSweep, Option
from harness.select import host as hostmod

TOOLS = ("sbatch", "srun", "scontrol", "scancel", "squeue")
JOURNAL_SUFFIX = ".slurm"
# States after which a job runs no more (Slurm's job_state_string; REVOKED: a federation's).
TERMINAL = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "BOOT_FAIL",
    "DEADLINE",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "SPECIAL_EXIT",
    "REVOKED",
}
STARTED = {"RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT"}
# Slurm's "could not open the output file" on the node: the job never ran its command.
EXIT_OUTPUT_UNOPENABLE = "0:53"
GONE_WAIT_S = 60.0  # how long jobs scancelled by a rerun may take to leave squeue
CANCEL_WAIT_S = 10.0  # how long cancel_all() waits for the jobs in flight to leave squeue
DRAIN_S = 120.0  # how long a job this harness scancelled may take to reach a final state
LOST_AFTER_S = 120.0  # slurmctld unreachable this long while a job is followed: lost
FIRST_POLL_S = 0.2  # the poll interval grows from this to poll_s (short jobs end sooner)
_KEY = re.compile(r" (?=[A-Za-z][A-Za-z0-9_:/]*=)")


# -- what Slurm prints ---------------------------------------------------------------------
def parse_job_line(line: str) -> dict[str, str]:
    """`scontrol show job -o` output: `Key=Value` tokens; values may hold `=` (TRES=cpu=1,...)
    and spaces (a path), keys may hold `:` and `/` (AllocNode:Sid, CPUs/Task)."""
    fields: dict[str, str] = {}
    for token in _KEY.split(line.strip()):
        key, sep, value = token.partition("=")
        if sep:
            fields[key] = value
    return fields


def parse_time(value: str | None) -> float | None:
    """Epoch seconds of a Slurm time stamp (local time, 1 s resolution); None for Unknown,
    None, N/A."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def parse_exit(value: str | None) -> tuple[int, int]:
    """(exit code, signal) of `ExitCode=E:S`."""
    code, _, sig = (value or "0:0").partition(":")
    try:
        return int(code), int(sig or 0)
    except ValueError:
        return 0, 0


def parse_mpi_list(text: str) -> list[str]:
    """Plugin names of `srun --mpi=list` (Slurm 22.05: one per indented line, then "specific
    pmix plugin versions available: pmix_v4[,...]"; newer: "MPI plugin types are..." with a
    comma list on one line)."""
    plugins: list[str] = []
    for line in text.splitlines():
        if ":" in line and "versions available" in line:
            plugins += [p.strip() for p in line.split(":", 1)[1].split(",")]
        elif line[:1].isspace() and line.strip():
            plugins += [p.strip() for p in line.split(",")]
        elif line.startswith("srun: ") and "MPI plugin types" not in line:
            plugins += [p.strip() for p in line[6:].split(",") if " " not in p.strip()]
    return [p for p in dict.fromkeys(plugins) if re.fullmatch(r"[A-Za-z0-9_]+", p)]


def time_limit_minutes(timeout_s: float) -> int:
    """sbatch --time in whole minutes, rounded up (at least one)."""
    return max(1, math.ceil(timeout_s / 60))


def essentials(info: dict[str, str]) -> str:
    """The words of a `scontrol show job` line that say what happened to a job."""
    keys = ("JobState", "Reason", "ExitCode", "RunTime", "SubmitTime", "StartTime", "EndTime")
    words = [f"{k}={info[k]}" for k in keys if k in info]
    if info.get("NodeList") not in (None, "", "(null)"):
        words.append(f"NodeList={info['NodeList']}")
    return " ".join(words)


def outcome(
    jobid: str, info: dict[str, str], cancelled: str | None, started: bool
) -> tuple[Fault | None, bool, int | None, int | None]:
    """(fault, timed out, exit code, signal) of a job from its last `scontrol show job` fields.

    The JobState decides, not ExitCode: CANCELLED is a fault (`cancelled`) unless this harness
    cancelled it (`cancelled`: timeout, start-timeout, interrupted); TIMEOUT or the harness's
    own timeout cancel is `timed_out`; NODE_FAIL and BOOT_FAIL lose the job (`lost-instance`);
    PREEMPTED is a cancel by the scheduler. The exit code is E of `ExitCode=E:S` (srun's, as
    the script execs it), or 128+S when a signal S ended the script; none when the job never
    ran its command to an end (0:0 in any state but COMPLETED)."""
    state = info.get("JobState", "")
    code, sig = parse_exit(info.get("ExitCode"))
    timed_out = state == "TIMEOUT" or (state == "CANCELLED" and cancelled == "timeout")
    fault = None
    if state == "CANCELLED" and cancelled is None:
        fault = Fault(
            "cancelled",
            f"slurm: job {jobid} cancelled by someone other than this harness: {essentials(info)}",
        )
    elif state == "PREEMPTED":
        fault = Fault("cancelled", f"slurm: job {jobid} preempted: {essentials(info)}")
    elif state in ("NODE_FAIL", "BOOT_FAIL"):
        fault = Fault("lost-instance", f"slurm: job {jobid} {essentials(info)}")
    elif state == "DEADLINE":
        kind = "cancelled" if started else "start-timeout"
        fault = Fault(kind, f"slurm: job {jobid} reached its deadline: {essentials(info)}")
    exit_code: int | None = 128 + sig if sig else code
    if (code, sig) == (0, 0) and state != "COMPLETED":
        exit_code = None  # never ran its command to an end (cancelled pending, node lost)
    return fault, timed_out, exit_code, sig or None


# -- the image's MPI, read from the SIF ------------------------------------------------------
_MPI_CACHE: dict[tuple, tuple[str | None, str | None, str]] = {}
_MPI_LOCK = threading.Lock()


def image_mpi(
    sif: Path, command: Sequence[str], workdir: str | None
) -> tuple[str | None, str | None, str]:
    """(implementation, version, how) of the MPI the image's command runs with: its program
    (followed through wrapper scripts as the artifact's GPU field is), the MPI library in that
    program's DT_NEEDED closure, the version of the package that holds it. Read from the SIF
    without running it; cached per file (path, size, mtime) and command."""
    sif = Path(sif)
    try:
        st = sif.stat()
    except OSError as exc:
        return None, None, f"{sif}: {exc.strerror}"
    key = (str(sif.resolve()), st.st_size, st.st_mtime_ns, tuple(command), workdir)
    with _MPI_LOCK:
        if key in _MPI_CACHE:
            return _MPI_CACHE[key]
    found = _read_image_mpi(sif, list(command), workdir)
    with _MPI_LOCK:
        _MPI_CACHE[key] = found
    return found


def _read_image_mpi(
    sif: Path, command: list[str], workdir: str | None
) -> tuple[str | None, str | None, str]:
    from harness.select import artifact_create as ac  # read-only use of the artifact's readers

    try:
        files = ac.SifFiles(sif)
        trace = ac.trace_command(files, command, workdir) if command else None
        program = trace.program if trace else None
        if program is None and files.is_file("/usr/bin/lmp"):
            program = "/usr/bin/lmp"
        if program is None:
            why = trace.note if trace else "no command"
            return None, None, f"no program to inspect ({why})"
        info = ac.elf_info(files.read_bytes(program))
        if info is None:
            return None, None, f"{program} is not an ELF file"
        closure = ac.library_closure(files, program, info.machine)
        for name, path in closure.items():
            for pattern, variant in ac.MPI_LIBS:
                if pattern.match(name):
                    version, pkg = _package_version(files, ac, variant, path)
                    how = f"{program} needs {name}" + (f" ({pkg})" if pkg else "")
                    return variant, version, how
        return None, None, f"{program} links no MPI library"
    except (HarnessError, OSError, subprocess.TimeoutExpired) as exc:
        return None, None, f"cannot read {sif}: {exc}"


def _package_version(files, ac, variant: str, path: str | None) -> tuple[str | None, str]:
    """The upstream version of the dpkg package that holds `path` (else of the first package
    named like the variant's, e.g. libopenmpi40), and that package's name and version."""
    packages = ac.dpkg_packages(files.read_text("/var/lib/dpkg/status") or "")
    pattern = ac.MPI_PACKAGES.get(variant)
    names = sorted(p for p in packages if pattern and pattern.match(p))
    if path and len(names) > 1:  # e.g. bullseye's libopenmpi3 beside trixie's libopenmpi40
        wanted = {path, files.resolve(path) or path}
        for name in names:
            lists = [
                e
                for e in files.entries
                if e in (f"/var/lib/dpkg/info/{name}.list",)
                or (e.startswith(f"/var/lib/dpkg/info/{name}:") and e.endswith(".list"))
            ]
            if any(wanted & set((files.read_text(x) or "").splitlines()) for x in lists):
                names = [name]
                break
    if not names:
        return None, ""
    fields = packages[names[0]]
    return ac.upstream_version(fields["Version"]), f"dpkg {names[0]} {fields['Version']}"


# -- the executor ----------------------------------------------------------------------------
def _run_tool(argv: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def _last_line(text: str) -> str:
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    return lines[-1] if lines else ""


@dataclass
class SlurmExecutor:
    """Submit each Job as a Slurm batch job and follow it with scontrol.

    partition, account: sbatch --partition/--account (default: the cluster's).
    options:        more sbatch options, one argv word each ("--qos=debug", "--constraint=x").
    mpi:            "auto" (the plugin pmi.yaml names for the image's MPI) or a plugin used
                    for every image.
    bind_mpi:       the bind model's host MPI library, PATH or HOST:CONTAINER (default: the
                    host's libmpi.so.40, Open MPI's, bound at its own path).
    start_timeout_s: scancel a job not started this long after its submission (0: never).
    poll_s:         the longest interval between two `scontrol show job` of a job.
    """

    partition: str | None = None
    account: str | None = None
    options: Sequence[str] = ()
    mpi: str = "auto"
    bind_mpi: str | None = None
    start_timeout_s: float | None = 600.0
    poll_s: float = 1.0
    launcher: str = "srun"
    name: str = field(default="slurm", init=False)
    needs_sif: bool = field(default=True, init=False)
    version: str | None = field(default=None, init=False)  # `scontrol --version`, after preflight
    OPTIONS: ClassVar[tuple[Option, ...]] = (
        Option("--slurm-partition", "partition", "sbatch --partition (default: the cluster's)"),
        Option("--slurm-account", "account", "sbatch --account (default: the user's)"),
        Option(
            "--slurm-option",
            "options",
            "one more sbatch option, as one word: --slurm-option=--qos=debug (repeatable)",
            {"action": "append"},
        ),
        Option(
            "--slurm-mpi",
            "mpi",
            "srun --mpi plugin: auto (default: the one harness/data/pmi.yaml names for the "
            "image's MPI) or a plugin of `srun --mpi=list` for every image",
        ),
        Option(
            "--slurm-bind-mpi",
            "bind_mpi",
            "the site MPI library bound into images in the bind model, PATH or "
            "HOST_PATH:CONTAINER_PATH (default: the host's libmpi.so.40 at its own path)",
        ),
        Option(
            "--slurm-start-timeout",
            "start_timeout_s",
            "scancel a job that has not started this many seconds after submission "
            "(default 600; 0: wait as long as the queue takes)",
            {"type": float},
        ),
    )

    def __post_init__(self) -> None:
        self.options = tuple(self.options or ())
        if self.start_timeout_s is not None and self.start_timeout_s < 0:
            raise HarnessError("slurm executor: --slurm-start-timeout must not be negative")
        if not self.poll_s > 0:
            raise HarnessError("slurm executor: the poll interval must be positive")
        self._lock = threading.Lock()
        self._live: dict[str, str] = {}  # job id -> job name, of the jobs in flight
        self._leftovers = LeftoverSweep("*" + JOURNAL_SUFFIX)
        self._interrupted = False
        self._runtime: str | None = None
        self._srun: str | None = None
        self._plugins: list[str] | None = None
        self._bind: str | None = None

    # -- setup -----------------------------------------------------------------------------
    def preflight(self) -> None:
        missing = [t for t in TOOLS if shutil.which(t) is None]
        if missing:
            raise HarnessError(
                f"slurm executor: {', '.join(missing)} not found on PATH (install Slurm's "
                "client commands, e.g. Debian's slurm-client)"
            )
        self._runtime = runtime.executable()
        self._srun = shutil.which("srun")
        ping = _run_tool(["scontrol", "ping"], timeout=30)
        if "is UP" not in ping.stdout:
            why = _last_line(ping.stdout + ping.stderr) or f"exit {ping.returncode}"
            raise HarnessError(f"slurm executor: slurmctld does not answer: {why}")
        self.version = _last_line(_run_tool(["scontrol", "--version"], timeout=30).stdout) or None
        plugins = self.plugins()
        if self.mpi != "auto" and self.mpi not in plugins:
            raise HarnessError(
                f"slurm executor: --slurm-mpi {self.mpi}: not a plugin of this Slurm "
                f"(srun --mpi=list: {', '.join(plugins)})"
            )
        if self.partition:
            part = _run_tool(["scontrol", "show", "partition", "-o", self.partition])
            if part.returncode != 0:
                why = _last_line(part.stderr + part.stdout)
                raise HarnessError(f"slurm executor: partition {self.partition!r}: {why}")

    def plugins(self) -> list[str]:
        """This Slurm's MPI plugin types (`srun --mpi=list`)."""
        if self._plugins is None:
            if shutil.which("srun") is None:
                raise HarnessError("slurm executor: srun not found on PATH")
            out = _run_tool(["srun", "--mpi=list"], timeout=60)
            plugins = parse_mpi_list(out.stdout + "\n" + out.stderr)
            if out.returncode != 0 or not plugins:
                why = _last_line(out.stderr + out.stdout) or f"exit {out.returncode}"
                raise HarnessError(f"slurm executor: srun --mpi=list failed: {why}")
            self._plugins = plugins
        return self._plugins

    def describe_host(self, host: dict[str, str]) -> dict[str, str]:
        """The host as a Slurm job sees it: the MPI implementations this Slurm's plugins can
        bootstrap (harness/data/pmi.yaml), the plugins and the PMI interfaces they serve."""
        plugins = self.plugins()
        served = mpi.launcher_plugins("slurm")
        interfaces = sorted({i for p in plugins for i in served.get(p, [])})
        return hostmod.with_launcher_mpi(
            host,
            mpi.bootstrappable("slurm", plugins),
            {hostmod.SLURM_MPI_PLUGINS: ",".join(plugins), hostmod.PMI: ",".join(interfaces)},
        )

    def bind_spec(self) -> str:
        if self._bind is None:
            if self.bind_mpi and ":" in self.bind_mpi:
                self._bind = self.bind_mpi
            else:
                lib = Path(self.bind_mpi) if self.bind_mpi else None
                lib = lib or mpi.host_library(mpi.SONAMES["OpenMPI"])
                self._bind = f"{lib.resolve()}:{lib}"
        return self._bind

    def plugin_for(self, job: Job) -> tuple[str | None, dict]:
        """The --mpi plugin for the job's image and what decided it (an event)."""
        if self.mpi != "auto":
            return self.mpi, {"name": "pmi", "plugin": self.mpi, "why": "--slurm-mpi"}
        impl, version, how = image_mpi(job.sif, job.command, job.workdir)
        plugin, why = mpi.choose_plugin("slurm", self.plugins(), impl, version)
        event = {
            "name": "pmi",
            "plugin": plugin,
            "mpi": impl,
            "mpi_version": version,
            "found": how,
            "why": why if plugin else why + ": srun without --mpi (the cluster's MpiDefault)",
        }
        return plugin, event

    # -- the job ---------------------------------------------------------------------------
    def command(self, job: Job, plugin: str | None) -> list[str]:
        """What the batch script execs: srun starting np ranks of apptainer exec."""
        if self._runtime is None:
            self.preflight()
        argv = [self._srun or "srun"]
        if plugin:
            argv.append(f"--mpi={plugin}")
        argv += [*job.launcher_options, self._runtime, "exec"]
        if job.workdir:
            argv += ["--pwd", job.workdir]
        for spec in self.binds(job):
            argv += ["--bind", spec]
        return [*argv, *job.runtime_options, str(job.sif), *job.command]

    def preview(self, job: Job) -> str:
        """sbatch's command line and the script it runs (a dry run). The --mpi plugin comes from
        the image's MPI, read from the SIF once it is pulled, unless --slurm-mpi names one."""
        plugin = None if self.mpi == "auto" else self.mpi
        script = Path(job.stdout).with_suffix(".sh")
        argv = self.command(job, plugin)
        note = "" if plugin else "  # --mpi=PLUGIN for the image's MPI (harness/data/pmi.yaml)"
        sbatch = self.sbatch_argv(job, f"harness-{job.mode}", script)
        return f"{shlex.join(sbatch)}\n{script}: exec {shlex.join(argv)}{note}"

    def binds(self, job: Job) -> list[str]:
        """Host files bound into the image: the site MPI library in the bind model."""
        return [self.bind_spec()] if job.mpi_model == "bind" else []

    def sbatch_argv(self, job: Job, name: str, script: Path) -> list[str]:
        argv = [
            "sbatch",
            "--parsable",
            f"--job-name={name}",
            f"--ntasks={job.np}",
            f"--time={time_limit_minutes(job.timeout_s)}",
            f"--output={Path(job.stdout).resolve()}",
            f"--error={Path(job.stderr).resolve()}",
            "--no-requeue",  # a job rerun after a node failure would write into these logs
        ]
        if self.partition:
            argv.append(f"--partition={self.partition}")
        if self.account:
            argv.append(f"--account={self.account}")
        return [*argv, *self.options, str(script)]

    def run(self, job: Job) -> JobResult:
        stdout = Path(job.stdout)
        stdout.parent.mkdir(parents=True, exist_ok=True)  # Slurm fails 0:53 without it
        self._sweep(stdout.parent)
        journal = stdout.with_name(stdout.name.split(".", 1)[0] + JOURNAL_SUFFIX)
        if journal.exists():  # this iteration's job of an earlier attempt (same run)
            self._cancel_journaled([journal])
        plugin, pmi_event = self.plugin_for(job)
        argv = self.command(job, plugin)
        stem = stdout.name.removesuffix(".out")
        name = f"harness-{job.mode or stdout.parent.name}-{stem}"  # the logs' dir is the mode
        script = stdout.with_name(stem + ".sh")
        script.write_text(f"#!/bin/bash\nexec {shlex.join(argv)}\n")
        sbatch = self.sbatch_argv(job, name, script)
        events: list[dict] = [pmi_event]
        with self._lock:
            if self._interrupted:
                raise HarnessError("slurm executor: the run is being interrupted: no new job")
        # journaled before sbatch: a harness killed before sbatch returns leaves a name to cancel
        atomic_write(journal, json.dumps({"name": name, "jobid": None}).encode())
        submitted = time.time()
        try:
            out = _run_tool(sbatch, timeout=120)
        except subprocess.TimeoutExpired:
            self._cancel_journaled([journal])
            raise HarnessError("slurm executor: sbatch did not answer in 120 s") from None
        except BaseException:  # interrupted mid-sbatch: the job may exist, known by its name
            with self._lock:
                self._interrupted = True
            self._scancel([], [name])
            with contextlib.suppress(HarnessError, subprocess.TimeoutExpired):
                if not self._wait_gone({f"name:{name}": name}, CANCEL_WAIT_S):
                    journal.unlink(missing_ok=True)
            raise
        if out.returncode != 0:
            journal.unlink(missing_ok=True)
            why = _last_line(out.stderr + out.stdout) or f"exit {out.returncode}"
            raise HarnessError(f"slurm executor: sbatch refused the job: {why}")
        jobid = out.stdout.strip().split(";")[0]
        atomic_write(journal, json.dumps({"name": name, "jobid": jobid}).encode())
        with self._lock:
            self._live[jobid] = name
            late = self._interrupted
        events.append({"name": "submit", "timestamp": submitted, "jobid": jobid, "sbatch": sbatch})
        try:
            if late:  # cancel_all() ran while sbatch did: this job is not followed
                self._scancel([jobid])
            follow = self._follow(jobid, job, events)
        except BaseException:
            # Ctrl-C, SIGTERM, an error: the job does not outlive the run
            with self._lock:
                self._interrupted = True
            self._scancel([jobid])
            with contextlib.suppress(HarnessError, subprocess.TimeoutExpired):
                if not self._wait_gone({jobid: name}, CANCEL_WAIT_S):
                    journal.unlink(missing_ok=True)  # gone: nothing left for a rerun
            raise
        finally:
            with self._lock:
                self._live.pop(jobid, None)
        journal.unlink(missing_ok=True)
        return self._result(job, jobid, argv, events, follow, submitted)

    def _follow(self, jobid: str, job: Job, events: list[dict]) -> _Followed:
        """Poll the job until a final state; enforce --timeout and the start timeout."""
        f = _Followed()
        t0 = time.monotonic()
        interval = FIRST_POLL_S
        last = None
        while True:
            now = time.monotonic()
            info, known = self._show(jobid)
            if info is None:
                if not known:  # purged, or a slurmctld that lost its state
                    f.fault = Fault(
                        "lost-instance", f"slurm: job {jobid} is no longer known to slurmctld"
                    )
                    events.append({"name": "lost", "timestamp": time.time(), "jobid": jobid})
                    return f
                f.unreachable_since = f.unreachable_since or now
                if now - f.unreachable_since > LOST_AFTER_S:
                    f.fault = Fault(
                        "lost-instance",
                        f"slurm: slurmctld did not answer for {LOST_AFTER_S:g} s while job "
                        f"{jobid} was followed",
                    )
                    events.append({"name": "lost", "timestamp": time.time(), "jobid": jobid})
                    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                        self._scancel([jobid])
                    return f
            else:
                f.unreachable_since = None
                f.info = info
                state = info.get("JobState", "")
                if (state, info.get("Reason")) != last:
                    last = (state, info.get("Reason"))
                    events.append(
                        {
                            "name": "state",
                            "timestamp": time.time(),
                            "jobid": jobid,
                            "state": state,
                            "reason": info.get("Reason"),
                        }
                    )
                if state in TERMINAL:
                    return f
                if state in STARTED and f.running_since is None:
                    f.running_since = now
                if f.cancelled is None:
                    self._limits(jobid, job, f, now - t0, now, info, events)
                elif now - f.cancelled_at > DRAIN_S:
                    f.fault = f.fault or Fault(
                        "lost-instance",
                        f"slurm: job {jobid} did not end within {DRAIN_S:g} s of its scancel "
                        f"({essentials(info)})",
                    )
                    return f
            time.sleep(interval)
            interval = min(self.poll_s, interval * 1.5)

    def _limits(self, jobid, job: Job, f: _Followed, waited, now, info, events) -> None:
        """Cancel a job over the harness's --timeout, or not started in time."""
        why = None
        if f.running_since is not None and now - f.running_since > job.timeout_s:
            why = "timeout"
        elif (
            f.running_since is None
            and self.start_timeout_s
            and waited > self.start_timeout_s
            and info.get("JobState") in ("PENDING", "CONFIGURING", "REQUEUED", "RESIZING")
        ):
            why = "start-timeout"
            f.fault = Fault(
                "start-timeout",
                f"slurm: job {jobid} did not start within {self.start_timeout_s:g} s "
                f"(JobState={info.get('JobState')} Reason={info.get('Reason')}): scancelled",
            )
        if why:
            f.cancelled, f.cancelled_at = why, now
            events.append({"name": "cancel", "timestamp": time.time(), "jobid": jobid, "why": why})
            self._scancel([jobid])

    def _result(self, job, jobid, argv, events, f: _Followed, submitted: float) -> JobResult:
        info = f.info or {}
        state = info.get("JobState", "")
        fault = f.fault
        stdout, stderr = Path(job.stdout), Path(job.stderr)
        if (
            fault is None
            and state == "FAILED"
            and info.get("ExitCode") == EXIT_OUTPUT_UNOPENABLE
            and not stdout.exists()
        ):
            raise HarnessError(
                f"slurm executor: job {jobid} could not open its output {stdout} on "
                f"{info.get('BatchHost') or 'its node'} (ExitCode=0:53): the outdir must be on "
                "a filesystem the nodes share, at the same path"
            )
        if state == "CANCELLED" and f.cancelled is None and self._interrupted:
            f.cancelled = "interrupted"  # by cancel_all(): this run is being stopped
        own_fault, timed_out, exit_code, signal = outcome(
            jobid, info, f.cancelled, f.running_since is not None
        )
        fault = fault or own_fault
        for path in (stdout, stderr):  # a job that never started wrote nothing
            if not path.exists():
                path.write_text("")
        submit, start, end = (
            parse_time(info.get(k)) for k in ("SubmitTime", "StartTime", "EndTime")
        )
        queue_s = max(0.0, start - submit) if start is not None and submit is not None else 0.0
        run_s = max(0.0, end - start) if end is not None and start is not None else 0.0
        events.append(
            {
                "name": "result",
                "timestamp": time.time(),
                "jobid": jobid,
                "state": state,
                "reason": info.get("Reason"),
                "exit_code": info.get("ExitCode"),
                "submit_time": info.get("SubmitTime"),
                "start_time": info.get("StartTime"),
                "end_time": info.get("EndTime"),
                "run_time": info.get("RunTime"),
                "nodes": info.get("NodeList"),
                "wall_s": round(time.time() - submitted, 3),
            }
        )
        return JobResult(
            argv=argv,
            exit_code=exit_code,
            signal=signal,
            timed_out=timed_out,
            queue_s=queue_s,
            run_s=run_s,
            events=events,
            fault=fault,
            binds=self.binds(job),
            runtime=self._runtime,
        )

    # -- Slurm commands ----------------------------------------------------------------------
    def _show(self, jobid: str) -> tuple[dict[str, str] | None, bool]:
        """(fields of the job, True) or (None, known): known False when slurmctld answered
        that it has no such job, True when it did not answer."""
        try:
            out = _run_tool(["scontrol", "show", "job", "-o", jobid], timeout=60)
        except subprocess.TimeoutExpired:
            return None, True
        if out.returncode == 0 and out.stdout.strip():
            return parse_job_line(out.stdout.splitlines()[0]), True
        return None, "Invalid job id" not in out.stderr

    def _scancel(self, jobids: list[str], names: list[str] = ()) -> None:
        if jobids:
            with contextlib.suppress(subprocess.TimeoutExpired):
                _run_tool(["scancel", *jobids], timeout=60)
        for name in names:
            with contextlib.suppress(subprocess.TimeoutExpired):
                _run_tool(["scancel", f"--name={name}"], timeout=60)

    def _queued(self, jobs: dict[str, str]) -> dict[str, str]:
        """Those of `jobs` (id -> name) that squeue still shows (pending, running, completing),
        found by id or by name (a job whose id was never journaled)."""
        names = sorted({n for n in jobs.values() if n})
        if not names:
            return {}
        out = _run_tool(["squeue", "-h", "-o", "%i|%j|%T", "--name=" + ",".join(names)])
        if out.returncode != 0:
            why = _last_line(out.stderr + out.stdout) or f"exit {out.returncode}"
            raise HarnessError(f"slurm executor: squeue failed: {why}")
        left = {}
        for line in out.stdout.splitlines():
            jobid, _, rest = line.partition("|")
            jname, _, state = rest.partition("|")
            if jobid in jobs or jname in names:
                left[jobid] = f"{jname} {state}"
        return left

    def _wait_gone(self, jobs: dict[str, str], wait_s: float) -> dict[str, str]:
        deadline = time.monotonic() + wait_s
        while (left := self._queued(jobs)) and time.monotonic() < deadline:
            time.sleep(0.2)
        return left

    def _cancel_journaled(self, journals: list[Path]) -> None:
        """scancel what the journals name and wait until it has left squeue; then they go."""
        jobs: dict[str, str] = {}
        for path in journals:
            try:
                entry = json.loads(path.read_text() or "{}")
            except (OSError, ValueError):
                entry = {}
            if entry.get("name"):
                jobs[str(entry.get("jobid") or f"name:{entry['name']}")] = entry["name"]
        if jobs:
            ids = [j for j in jobs if not j.startswith("name:")]
            self._scancel(ids, sorted(set(jobs.values())))
            left = self._wait_gone(jobs, GONE_WAIT_S)
            if left:
                shown = ", ".join(f"{j} ({s})" for j, s in sorted(left.items()))
                raise HarnessError(
                    f"slurm executor: job(s) left by an earlier run are still in squeue "
                    f"{GONE_WAIT_S:g} s after scancel: {shown}"
                )
        for path in journals:
            path.unlink(missing_ok=True)

    def _sweep(self, directory: Path) -> None:
        self._leftovers(directory, self._cancel_journaled)

    def cancel_all(self) -> None:
        """scancel every job in flight and wait (a little) for them to leave squeue."""
        with self._lock:
            self._interrupted = True
            live = dict(self._live)
        if live:
            self._scancel(sorted(live))
            with contextlib.suppress(HarnessError, subprocess.TimeoutExpired, OSError):
                self._wait_gone(live, CANCEL_WAIT_S)


@dataclass
class _Followed:
    """What following one job found."""

    info: dict[str, str] | None = None
    fault: Fault | None = None
    running_since: float | None = None
    cancelled: str | None = None  # why this harness scancelled it: timeout, start-timeout
    cancelled_at: float = 0.0
    unreachable_since: float | None = None
