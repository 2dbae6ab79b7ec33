"""A Flux job's main eventlog (RFC 21) read into the lifecycle's events: the whole translation.

submit, alloc, start and finish are the stamps (queue time ends at alloc, run time is start to
finish); the exit code is the `finish` event's wait status, a signal as 128+n; an `exception`
of type cancel is the scheduler's word on a cancel, of type timeout its own time limit, and
any other fatal one (severity 0) takes the job down. Every entry is kept in the record as the
eventlog gives it.
"""

from __future__ import annotations

import os

from harness.run.executors.core import (
    ALLOCATED,
    CANCELLED,
    ENDING,
    FINISHED,
    LOST,
    NOTE,
    STARTED,
    SUBMITTED,
    TIMEOUT,
    Event,
)

STAMPS = {"submit": SUBMITTED, "alloc": ALLOCATED, "start": STARTED}
# Job state after each main-eventlog event that changes it, and why a job in it waits.
STATE_AFTER = {
    "submit": "NEW",
    "validate": "DEPEND",
    "depend": "PRIORITY",
    "priority": "SCHED",
    "alloc": "RUN",
    "finish": "CLEANUP",
    "clean": "INACTIVE",
}
WAITING_FOR = {
    "NEW": "not validated",
    "DEPEND": "waiting for a dependency",
    "PRIORITY": "waiting for a priority",
    "SCHED": "waiting for resources, or held",
    "RUN": "allocated, the job shell did not start",
}


def wait_status(status: int) -> tuple[int, int | None]:
    """(exit code, signal) of a wait status; a signal is reported as 128+n."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return 128 + sig, sig
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status), None
    return status, None


def translate(jobid: str, name: str, timestamp: float, context: dict) -> Event:
    """One eventlog entry of job `jobid` (f58) as the lifecycle hears it."""
    entry = {"name": name, "timestamp": timestamp, "context": dict(context)}
    if name == "submit":
        entry["jobid"] = jobid
    if name == "finish":
        code, sig = wait_status(int(context.get("status", 0)))
        return Event(FINISHED, at=timestamp, exit_code=code, signal=sig, record=entry)
    if name != "exception":
        kind = STAMPS.get(name, NOTE)
        return Event(kind, at=None if kind == NOTE else timestamp, record=entry)
    if context.get("type") == "cancel":
        note = context.get("note") or "no note"
        who = f"user {context['userid']}" if "userid" in context else "someone"
        detail = f"flux: job {jobid} cancelled by {who}, not by this harness: {note}"
        return Event(CANCELLED, detail=detail, record=entry)
    if context.get("type") == "timeout":
        return Event(TIMEOUT, record=entry)
    return Event(ENDING if _fatal(context) else NOTE, record=entry)


def state_after(state: str, name: str, context: dict) -> str:
    """The job's state once this entry is in its eventlog (a fatal exception: CLEANUP)."""
    if name == "exception" and _fatal(context) and state != "INACTIVE":
        return "CLEANUP"
    return STATE_AFTER.get(name, state)


def waiting(state: str) -> str:
    """The start timeout's words on a job in `state`."""
    why = WAITING_FOR.get(state)
    return f"state {state}{': ' + why if why else ''}"


def _fatal(context: dict) -> bool:
    return int(context.get("severity", 1)) == 0


def lost(jobid: str, error: str, gone: str | None, uri: str | None, now: float) -> Event:
    """The eventlog could not be read on: `gone` None when the instance still answers (only
    the eventlog is lost, the job is cancelled), else why it does not (the run stops)."""
    if gone is None:
        record = {"name": "lost-eventlog", "timestamp": now, "error": error}
        return Event(
            LOST, detail=f"flux executor: lost the eventlog of job {jobid}: {error}", record=record
        )
    target = f"Flux instance at {uri}" if uri else "Flux system instance"
    return Event(
        LOST,
        detail=f"flux executor: lost the Flux instance while following job {jobid}: {gone}",
        gone=f"flux executor: the {target} is gone or unreachable (lost while following job "
        f"{jobid}: {gone}); the iterations recorded so far are kept: rerun the same command "
        "against a running instance to continue",
        record={"name": "lost-instance", "timestamp": now, "error": gone, "uri": uri},
    )
