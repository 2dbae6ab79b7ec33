"""The Slurm executor: each iteration is one Slurm job, started by srun under the harness.

    srun --job-name=harness-MODE-iter-N.ATTEMPT --ntasks=NP --time=MINUTES [--partition=P]
         [--account=A] [--slurm-option ...] [--mpi=PLUGIN] [launcher options]
         APPTAINER exec [--pwd W] [--bind HOST_LIBMPI] SIF CMD...

srun asks slurmctld for the allocation and starts the ranks (direct launch) in the foreground
of the harness: no batch script waits for the scheduler to start it, and the job's end is
srun's exit, seen at once. Its output (the tasks' and srun's own lines) goes into the
iteration's logs. The `--mpi` plugin is the one harness/data/pmi.yaml names for the MPI read
from the image (image_mpi.py). Slurm decides the outcome: the job's id comes from squeue by its
name, `scontrol show job -o ID` is asked (a back-off from 10 ms to poll_s) until the job runs
and once srun has exited, until a final JobState, which slurm_commands.FINAL translates. The
lifecycle (core.py) journals each job (logs/MODE/iter-N.slurm), sweeps what a killed harness
left, enforces --timeout (Slurm's `--time` has whole minutes and comes up to ~30 s late) and
--slurm-start-timeout, and scancels every job in flight when the run is interrupted.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from harness import mpi
from harness.errors import HarnessError
from harness.run import runtime
from harness.run.executors import core, process
from harness.run.executors import slurm_commands as sc
from harness.run.executors.base import Caps, Job, JobResult, Option
from harness.run.executors.image_mpi import srun_plugin
from harness.select import host as hostmod

TOOLS = ("srun", "scontrol", "scancel", "squeue")
FIRST_POLL_S = 0.01  # the back-off of `scontrol show job` starts here and doubles to poll_s
FIND_S = 120.0  # how long srun may take to make its job known to squeue
LOST_AFTER_S = 120.0  # slurmctld unreachable this long while a job is followed: lost
SRUN_EXIT_S = 40.0  # how long srun may take to exit after its job ended (KillWait is 30 s)


@dataclass
class _Followed:
    """One job in flight: its srun, what Slurm last said, and the poll's back-off."""

    proc: subprocess.Popen
    submitted: float
    info: dict[str, str] = field(default_factory=dict)
    seen: tuple | None = None
    ran: bool = False
    interval: float = FIRST_POLL_S
    unanswered_since: float | None = None


@dataclass
class SlurmExecutor:
    """Start each Job as a Slurm job with srun and follow it with scontrol.

    partition, account: srun --partition/--account (default: the cluster's).
    options:        more srun options, one argv word each ("--qos=debug", "--constraint=x").
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
    version: str | None = field(default=None, init=False)  # `scontrol --version`, after preflight
    caps: ClassVar[Caps] = Caps(describes_host=True, counts_slots=True)
    OPTIONS: ClassVar[tuple[Option, ...]] = (
        Option("--slurm-partition", "partition", "srun --partition (default: the cluster's)"),
        Option("--slurm-account", "account", "srun --account (default: the user's)"),
        Option(
            "--slurm-option",
            "options",
            "one more srun option, as one word: --slurm-option=--qos=debug (repeatable)",
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
        self._jobs: dict[str, _Followed] = {}  # job id -> its follow, of the jobs in flight
        self._names: dict[str, str] = {}  # job id -> name, of every job asked about
        self._runtime: str | None = None
        self._srun: str | None = None
        self._plugins: list[str] | None = None
        policy = core.Policy("slurm executor", ".slurm", start_timeout_s=self.start_timeout_s)
        self._core = core.Lifecycle(self, policy)

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
        ping = sc.run_tool(["scontrol", "ping"], timeout=30)
        if "is UP" not in ping.stdout:
            why = sc.last_line(ping.stdout + ping.stderr) or f"exit {ping.returncode}"
            raise HarnessError(f"slurm executor: slurmctld does not answer: {why}")
        version = sc.run_tool(["scontrol", "--version"], timeout=30).stdout
        self.version = sc.last_line(version) or None
        plugins = self.plugins()
        if self.mpi != "auto" and self.mpi not in plugins:
            raise HarnessError(
                f"slurm executor: --slurm-mpi {self.mpi}: not a plugin of this Slurm "
                f"(srun --mpi=list: {', '.join(plugins)})"
            )
        if self.partition:
            part = sc.run_tool(["scontrol", "show", "partition", "-o", self.partition])
            if part.returncode != 0:
                why = sc.last_line(part.stderr + part.stdout)
                raise HarnessError(f"slurm executor: partition {self.partition!r}: {why}")

    def slots(self) -> int | None:
        """The CPUs of the partition (of the largest when none is named: an upper bound, so a
        request that could run is never refused); srun runs no more tasks than that."""
        argv = ["sinfo", "-h", "-o", "%C", *(["-p", self.partition] if self.partition else [])]
        out = sc.run_tool(argv, timeout=30)
        # %C: allocated/idle/other/total CPUs, a line per partition
        fields = (x.split("/") for x in out.stdout.split())
        totals = [int(f[3]) for f in fields if len(f) == 4 and f[3].isdigit()]
        return max(totals) if out.returncode == 0 and totals else None

    def plugins(self) -> list[str]:
        """This Slurm's MPI plugin types (`srun --mpi=list`)."""
        if self._plugins is None:
            if shutil.which("srun") is None:
                raise HarnessError("slurm executor: srun not found on PATH")
            out = sc.run_tool(["srun", "--mpi=list"], timeout=60)
            plugins = sc.parse_mpi_list(out.stdout + "\n" + out.stderr)
            if out.returncode != 0 or not plugins:
                why = sc.last_line(out.stderr + out.stdout) or f"exit {out.returncode}"
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

    # -- the job ---------------------------------------------------------------------------
    def binds(self, job: Job) -> list[str]:
        """Host files bound into the image: the site MPI library in the bind model, PATH (at
        its own path) or HOST:CONTAINER; by default the host's Open MPI library."""
        if job.mpi_model != "bind":
            return []
        if self.bind_mpi and ":" in self.bind_mpi:
            return [self.bind_mpi]
        lib = Path(self.bind_mpi) if self.bind_mpi else mpi.host_library(mpi.SONAMES["OpenMPI"])
        return [f"{lib.resolve()}:{lib}"]

    def command(self, job: Job, name: str, plugin: str | None) -> list[str]:
        """srun with the job's own options, starting np ranks of apptainer exec."""
        if self._runtime is None:
            self.preflight()
        argv = [self._srun or "srun", f"--job-name={name}", f"--ntasks={job.np}"]
        argv.append(f"--time={sc.time_limit_minutes(job.timeout_s)}")
        if self.partition:
            argv.append(f"--partition={self.partition}")
        if self.account:
            argv.append(f"--account={self.account}")
        argv += [*self.options, *([f"--mpi={plugin}"] if plugin else [])]
        argv += [*job.launcher_options, self._runtime, "exec"]
        if job.workdir:
            argv += ["--pwd", job.workdir]
        for spec in self.binds(job):
            argv += ["--bind", spec]
        return [*argv, *job.runtime_options, str(job.sif), *job.command]

    def preview(self, job: Job) -> str:
        """srun's command line (a dry run). The --mpi plugin comes from the image's MPI, read
        from the SIF once it is pulled, unless --slurm-mpi names one."""
        plugin = None if self.mpi == "auto" else self.mpi
        argv = self.command(job, f"harness-{job.mode}", plugin)
        note = "" if plugin else "  # --mpi=PLUGIN for the image's MPI (harness/data/pmi.yaml)"
        return shlex.join(argv) + note

    def run(self, job: Job) -> JobResult:
        return self._core.run(job)

    def cancel_all(self) -> None:
        """scancel every job in flight and wait (a little) for them to leave squeue."""
        self._core.cancel_all()

    # -- the lifecycle's backend --------------------------------------------------------------
    def prepare(self, job: Job, name: str) -> core.Prepared:
        if self.mpi == "auto":
            plugin, pmi = srun_plugin(self.plugins(), job)
        else:
            plugin, pmi = self.mpi, {"name": "pmi", "plugin": self.mpi, "why": "--slurm-mpi"}
        argv = self.command(job, name, plugin)
        logs = (Path(job.stdout), Path(job.stderr))
        return core.Prepared(name, argv, logs, [pmi], self.binds(job), self._runtime)

    def submit(self, prepared: core.Prepared) -> tuple[str, list[core.Event]]:
        stdout, stderr = prepared.native
        submitted = time.time()
        proc = process.spawn(prepared.argv, stdout, stderr, os.environ)
        jobid = self._id_of(prepared.name, proc, stderr)
        self._jobs[jobid] = _Followed(proc, submitted)
        record = {"name": "submit", "timestamp": submitted, "jobid": jobid, "srun": prepared.argv}
        return jobid, [core.Event(core.SUBMITTED, at=submitted, record=record)]

    def _id_of(self, name: str, proc: subprocess.Popen, stderr: Path) -> str:
        """The id of the job srun asked for, from squeue by its name (ms after srun starts);
        Refused when srun ends without one."""
        deadline, interval = time.monotonic() + FIND_S, FIRST_POLL_S
        while time.monotonic() < deadline:
            ended = proc.poll() is not None
            if found := self._queued([name], states="all"):
                return next(iter(found))
            if ended:
                why = sc.last_line(stderr.read_text(errors="replace")) or f"exit {proc.returncode}"
                raise core.Refused(f"slurm executor: srun refused the job: {why}")
            time.sleep(interval)
            interval = min(self.poll_s, interval * 2)
        raise core.Unanswered(f"slurm executor: no job {name} in squeue {FIND_S:g} s after srun")

    def poll(self, jobid: str, until: float | None) -> list[core.Event]:
        """Before the job runs, Slurm is asked whether it does (the back-off); once it runs,
        srun's exit is the news; after it, Slurm is asked for the final state."""
        f = self._jobs[jobid]
        left = 1.0 if until is None else max(0.0, until - time.monotonic())
        if f.proc.returncode is not None:
            time.sleep(min(f.interval, left))
            f.interval = min(self.poll_s, f.interval * 2)
        elif process.wait(f.proc, min(1.0 if f.ran else f.interval, left)) is not None:
            f.interval = FIRST_POLL_S  # srun ended: Slurm's final word comes within ms
        elif f.ran:
            return []
        else:
            f.interval = min(self.poll_s, f.interval * 2)
        info, known = sc.show_job(jobid)
        if info is None:
            return self._unanswered(jobid, f, known)
        f.unanswered_since, f.info = None, info
        state, events = info.get("JobState", ""), []
        if (state, info.get("Reason")) != f.seen:
            f.seen = (state, info.get("Reason"))
            entry = {"name": "state", "timestamp": time.time(), "jobid": jobid, "state": state}
            events.append(core.Event(core.NOTE, record={**entry, "reason": f.seen[1]}))
        if state in sc.RUNNING and not f.ran:
            f.ran = True
            at = sc.parse_time(info.get("StartTime")) or time.time()
            events.append(core.Event(core.STARTED, at=at))
        if state in sc.FINAL and f.proc.returncode is not None:  # else srun is still ending
            events += sc.final_events(jobid, info, f.ran, f.proc.returncode)
        return events

    def _unanswered(self, jobid: str, f: _Followed, known: bool) -> list[core.Event]:
        """A job slurmctld no longer knows, or a slurmctld silent for LOST_AFTER_S: lost."""
        if known:
            f.unanswered_since = f.unanswered_since or time.monotonic()
            if time.monotonic() - f.unanswered_since <= LOST_AFTER_S:
                return []
            why = f"slurmctld did not answer for {LOST_AFTER_S:g} s while job {jobid} was followed"
        else:  # purged, or a slurmctld that lost its state
            why = f"job {jobid} is no longer known to slurmctld"
        record = {"name": "lost", "timestamp": time.time(), "jobid": jobid}
        return [core.Event(core.LOST, detail=f"slurm: {why}", record=record)]

    def waiting(self, jobid: str) -> tuple[str, str]:
        info = self._jobs[jobid].info
        return info.get("JobState", "unknown"), sc.essentials(info) or "no state yet"

    def cancel(self, jobids: Sequence[str], why: str) -> None:
        if jobids:
            sc.run_tool(["scancel", *jobids], timeout=60)

    def find(self, entry: dict) -> list[str]:
        return list(self._queued([entry["name"]]))

    def active(self, jobids: Collection[str]) -> set[str]:
        names = sorted({self._names[j] for j in jobids if j in self._names})
        return set(self._queued(names)) & set(jobids) if names else set()

    def collect(self, jobid: str, job: Job, prepared: core.Prepared, trace) -> core.Collected:
        """srun's end (its last lines are the job's too), then the `result` entry: what Slurm
        said last."""
        f = self._jobs.pop(jobid)
        if process.wait(f.proc, SRUN_EXIT_S) is None:
            process.killpg(f.proc.pid)
            f.proc.wait()
        entry = {"name": "result", "timestamp": time.time(), "jobid": jobid}
        entry |= sc.result_fields(f.info) | {"wall_s": round(time.time() - f.submitted, 3)}
        trace.events.append(entry)
        return core.Collected(prepared.argv)

    def _queued(self, names: list[str], states: str | None = None) -> dict[str, str]:
        found = sc.queued(names, states)
        self._names.update(found)
        return found
