"""Slurm's client commands, run (argv lists) and read: `scontrol show job -o` lines, times,
exit codes, `srun --mpi=list`, squeue by job name, and the table that turns a job's final
state into the lifecycle's events.

The JobState decides, never ExitCode alone (a cancel and a time limit both end 0:15): the
table below is the whole translation. The exit code is srun's own exit status where srun ended
by itself (the highest of its tasks' exit codes, an MPI abort's code, 128+N for a signal),
else E of `ExitCode=E:S` or 128+S; none when the job never ran its command to an end (0:0 in
any final state but COMPLETED).
"""

from __future__ import annotations

import math
import re
import subprocess
from datetime import datetime

from harness.errors import HarnessError
from harness.judge.faults import Fault
from harness.run.executors.core import (
    CANCELLED,
    ENDED,
    FAULT,
    FINISHED,
    STARTED,
    SUBMITTED,
    TIMEOUT,
    Event,
)
from harness.run.executors.process import exit_status

# States in which the job's command runs or ran (the harness's timeout counts from the first).
RUNNING = {"RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT"}
# Final states (Slurm's job_state_string; REVOKED: a federation's) -> what the lifecycle hears
# besides FINISHED: nothing (the output decides), the scheduler's own word (cancelled, timeout)
# or a typed fault. DEADLINE is a start timeout for a job that never ran.
FINAL: dict[str, tuple[str, str | None] | None] = {
    "COMPLETED": None,
    "FAILED": None,
    "OUT_OF_MEMORY": None,
    "SPECIAL_EXIT": None,
    "REVOKED": None,
    "CANCELLED": (CANCELLED, None),
    "TIMEOUT": (TIMEOUT, None),
    "PREEMPTED": (FAULT, "cancelled"),
    "NODE_FAIL": (FAULT, "lost-instance"),
    "BOOT_FAIL": (FAULT, "lost-instance"),
    "DEADLINE": (FAULT, "start-timeout"),
}
_KEY = re.compile(r" (?=[A-Za-z][A-Za-z0-9_:/]*=)")


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
    """srun --time in whole minutes, rounded up (at least one)."""
    return max(1, math.ceil(timeout_s / 60))


def essentials(info: dict[str, str]) -> str:
    """The words of a `scontrol show job` line that say what happened to a job."""
    keys = ("JobState", "Reason", "ExitCode", "RunTime", "SubmitTime", "StartTime", "EndTime")
    words = [f"{k}={info[k]}" for k in keys if k in info]
    if info.get("NodeList") not in (None, "", "(null)"):
        words.append(f"NodeList={info['NodeList']}")
    return " ".join(words)


def final_events(
    jobid: str, info: dict[str, str], ran: bool, srun_status: int | None = None
) -> list[Event]:
    """The lifecycle's events for a job in a final state (`ran`: it was seen running): Slurm's
    own stamps, the exit status, the state's word from FINAL, and the end. The exit status is
    srun's own (`srun_status`, a return code) where srun started the job's ranks and ended by
    itself: what a batch script that execs srun would leave as the job's ExitCode, where
    Slurm's ExitCode of an srun allocation is its step's (0:9 when the step was killed after
    an MPI abort whose code srun returns)."""
    state = info.get("JobState", "")
    submit, start, end = (parse_time(info.get(k)) for k in ("SubmitTime", "StartTime", "EndTime"))
    events = [Event(SUBMITTED, at=submit)] if submit is not None else []
    code, sig = parse_exit(info.get("ExitCode"))
    if (code, sig) != (0, 0) or state == "COMPLETED":  # it ran its command to an end
        if start is not None:
            events.append(Event(STARTED, at=start))
        exit_code, signal = (128 + sig if sig else code), sig or None
        if srun_status is not None:
            exit_code, signal = exit_status(srun_status)
        events.append(Event(FINISHED, at=end, exit_code=exit_code, signal=signal))
    word = FINAL.get(state)
    if word is not None:
        kind, fault = word
        if state == "DEADLINE" and ran:
            fault = "cancelled"
        events.append(_word(kind, fault, state, jobid, info))
    return [*events, Event(ENDED)]


def _word(kind: str, fault: str | None, state: str, jobid: str, info: dict[str, str]) -> Event:
    if kind == CANCELLED:
        return Event(
            CANCELLED,
            detail=f"slurm: job {jobid} cancelled by someone other than this harness: "
            f"{essentials(info)}",
        )
    if kind == TIMEOUT:
        return Event(TIMEOUT)
    what = {"PREEMPTED": "preempted", "DEADLINE": "reached its deadline"}.get(state, "ended")
    return Event(FAULT, fault=Fault(fault, f"slurm: job {jobid} {what}: {essentials(info)}"))


# -- the commands ----------------------------------------------------------------------------
def run_tool(argv: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def last_line(text: str) -> str:
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    return lines[-1] if lines else ""


def show_job(jobid: str) -> tuple[dict[str, str] | None, bool]:
    """(fields of the job, True) or (None, known): known False when slurmctld answered that it
    has no such job, True when it did not answer."""
    try:
        out = run_tool(["scontrol", "show", "job", "-o", jobid], timeout=60)
    except subprocess.TimeoutExpired:
        return None, True
    if out.returncode == 0 and out.stdout.strip():
        return parse_job_line(out.stdout.splitlines()[0]), True
    return None, "Invalid job id" not in out.stderr


def queued(names: list[str], states: str | None = None) -> dict[str, str]:
    """{id: name} of the jobs of these names squeue shows (pending, running, completing; with
    states="all" also those that ended and slurmctld still remembers)."""
    argv = ["squeue", "-h", "-o", "%i|%j", "--name=" + ",".join(names)]
    if states:
        argv.append(f"--states={states}")
    out = run_tool(argv)
    if out.returncode != 0:
        why = last_line(out.stderr + out.stdout) or f"exit {out.returncode}"
        raise HarnessError(f"slurm executor: squeue failed: {why}")
    found = {}
    for line in out.stdout.splitlines():
        jobid, _, name = line.partition("|")
        if name in names:
            found[jobid] = name
    return found


def result_fields(info: dict[str, str]) -> dict[str, str | None]:
    """What the record's `result` entry keeps of the last `scontrol show job` line."""
    return {
        "state": info.get("JobState", ""),
        "reason": info.get("Reason"),
        "exit_code": info.get("ExitCode"),
        "submit_time": info.get("SubmitTime"),
        "start_time": info.get("StartTime"),
        "end_time": info.get("EndTime"),
        "run_time": info.get("RunTime"),
        "nodes": info.get("NodeList"),
    }
