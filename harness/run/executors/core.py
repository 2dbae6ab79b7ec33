"""One batch-job lifecycle for every scheduler: the adapters only translate.

`Lifecycle(backend, policy).run(job)` does what every scheduler needs, once:

- **No orphans.** Each iteration's job is journaled next to its logs (`iter-N<suffix>`, JSON):
  its name before the submission, its id as soon as the scheduler gives one. The first job of
  a log directory, in every run, cancels what the journals there name (jobs a killed harness
  left) and waits until they are gone before anything is submitted there; a journal of this
  iteration from an earlier attempt is handled the same way. A journal goes once its job has
  ended.
- **Interrupts.** Jobs in flight are in a live table; `cancel_all()` (the runner calls it on
  Ctrl-C, SIGTERM or any error) cancels them, waits until the scheduler says they are gone and
  refuses every later submission. A job whose submission returns after that is cancelled at
  once (the "late" check); a job interrupted while it is followed is cancelled on the way out.
- **Deadlines, decided here.** A job not started `start_timeout_s` after its submission is
  cancelled (fault `start-timeout`); one running longer than the job's timeout is cancelled
  (`timed_out`), unless the scheduler keeps that limit itself exactly (`Policy.keeps_limit`).
  After a cancel of its own, or once the job is ending, the lifecycle follows it for at most
  DRAIN_S more.
- **Outcome.** Adapters report normalised events (`Event`); the exit code and signal come from
  FINISHED, timings from the stamps (queue: submitted to allocated or started; run: started to
  finished), a cancel nobody here asked for is fault `cancelled`, a lost job or scheduler
  `lost-instance`; a LOST event may also say the scheduler is gone, and then every later
  run() refuses with that line.

An adapter (`Backend`) prepares the native job, submits it, answers `poll` with what is new,
cancels, finds a journal's jobs, and collects the output. It holds no journal, no live table
and no deadline of its own.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.errors import HarnessError
from harness.files import atomic_write
from harness.judge.faults import Fault
from harness.run.executors.base import Job, JobResult

CANCEL_WAIT_S = 10.0  # how long cancel_all() waits for the jobs in flight to be gone
GONE_WAIT_S = 60.0  # how long a rerun waits for the jobs a killed harness left
DRAIN_S = 60.0  # how long a job cancelled here (or ending) may take to reach its end
GONE_POLL_S = 0.1  # the interval of the wait until cancelled jobs are gone

# -- the normalised vocabulary ------------------------------------------------------------------
SUBMITTED = "submitted"  # the scheduler took the job (its stamp: queue time starts)
ALLOCATED = "allocated"  # resources given (queue time ends here when the scheduler says so)
STARTED = "started"  # the job's command started (run time starts; the timeout counts)
FINISHED = "finished"  # the command ended: exit_code, signal
ENDING = "ending"  # a fatal exception: the job is going down
CANCELLED = "cancelled"  # the scheduler says: cancelled (detail: by whom, as it says it)
TIMEOUT = "timeout"  # the scheduler's own time limit ended it
FAULT = "fault"  # a typed failure the scheduler reports (node lost, image not pulled ...)
LOST = "lost"  # the job or the scheduler can no longer be followed (detail: why)
ENDED = "ended"  # nothing more will come
NOTE = "note"  # only a record entry
KINDS = (SUBMITTED, ALLOCATED, STARTED, FINISHED, ENDING, CANCELLED, TIMEOUT, FAULT, LOST)
KINDS += (ENDED, NOTE)
_GOING_DOWN = (FINISHED, ENDING, CANCELLED, TIMEOUT, FAULT)


@dataclass(frozen=True)
class Event:
    """One observation of a job, normalised, and the native entry the record keeps of it."""

    kind: str
    at: float | None = None  # when, on the scheduler's clock (epoch seconds)
    exit_code: int | None = None  # FINISHED
    signal: int | None = None  # FINISHED
    detail: str = ""  # CANCELLED: the scheduler's words; LOST: why
    fault: Fault | None = None  # FAULT
    gone: str | None = None  # LOST: the scheduler itself is gone; why nothing more can run
    record: dict | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}")


@dataclass
class Trace:
    """What the lifecycle learned about one job."""

    jobid: str
    events: list[dict] = field(default_factory=list)  # the record's entries, in order
    stamps: dict[str, float] = field(default_factory=dict)  # kind -> at (the last word wins)
    exit_code: int | None = None
    signal: int | None = None
    ending: bool = False
    ended: bool = False
    timed_out: bool = False  # the scheduler's own limit
    cancelled: str | None = None  # the scheduler's words on a cancel
    asked: str | None = None  # why this harness cancelled it: timeout, start-timeout, ...
    fault: Fault | None = None  # the first fault seen wins

    def add(self, ev: Event) -> None:
        if ev.record is not None:
            self.events.append(ev.record)
        if ev.at is not None:
            self.stamps[ev.kind] = ev.at
        if ev.kind == FINISHED:
            self.exit_code, self.signal = ev.exit_code, ev.signal
        elif ev.kind == CANCELLED:
            self.cancelled = ev.detail
        elif ev.kind == TIMEOUT:
            self.timed_out = True
        elif ev.kind == FAULT:
            self.fault = self.fault or ev.fault
        elif ev.kind == ENDED:
            self.ended = True
        self.ending = self.ending or ev.kind in _GOING_DOWN

    @property
    def started(self) -> bool:
        return STARTED in self.stamps

    def timings(self, end: float) -> tuple[float, float]:
        """(queue_s, run_s) from the stamps; `end` closes what never closed."""
        s = self.stamps
        queue = run = 0.0
        if SUBMITTED in s:
            began = s.get(ALLOCATED, s.get(STARTED, end))
            queue = began - s[SUBMITTED]
        if STARTED in s:
            run = s.get(FINISHED, end) - s[STARTED]
        return max(0.0, queue), max(0.0, run)

    def settle(self, interrupted: bool) -> None:
        """A cancel this harness did not ask for (and no interrupt of the run) is the fault
        `cancelled`; a cancel for the harness's timeout is a timeout."""
        if self.cancelled and self.asked is None and not interrupted:
            self.fault = self.fault or Fault("cancelled", self.cancelled)
        self.timed_out = self.timed_out or self.asked == "timeout"


@dataclass
class Prepared:
    """A job ready for its scheduler: the native form, what it runs, its first entries."""

    name: str  # the scheduler's name of the job (journaled before the submission)
    argv: list[str]  # what the job runs, for the record
    native: Any = None  # jobspec, script, MiniCluster body ...: the adapter's own
    events: list[dict] = field(default_factory=list)
    binds: list[str] = field(default_factory=list)  # host files bound into the image
    runtime: str | None = None  # the container runtime the job uses
    journal: dict = field(default_factory=dict)  # more for the journal (e.g. the Flux URI)


@dataclass
class Collected:
    """What collect() found after the job: the argv as it ran; whether nothing of the job
    is left in the scheduler (then its journal goes even if it was not followed to its end)."""

    argv: list[str]
    released: bool = False


class Refused(HarnessError):
    """The scheduler refused the submission: no job exists."""


class Unanswered(HarnessError):
    """The submission got no answer: a job may exist, known by its journaled name."""


class Backend(Protocol):
    """A scheduler, translated. Every call may raise HarnessError for a broken setup."""

    def prepare(self, job: Job, name: str) -> Prepared: ...

    def submit(self, prepared: Prepared) -> tuple[str, list[Event]]:
        """The job's id; Refused or Unanswered when there is none."""

    def poll(self, jobid: str, until: float | None) -> list[Event]:
        """What is new about the job, waiting for news at most until `until` (the lifecycle's
        clock) and never much longer than a second: the lifecycle checks its deadlines and
        interrupts between two polls."""

    def waiting(self, jobid: str) -> tuple[str, str]:
        """(state, words) of a job that has not started: why it waits."""

    def cancel(self, jobids: Sequence[str], why: str) -> None:
        """Ask the scheduler to end these jobs; an ended or unknown job is no error."""

    def find(self, entry: dict) -> list[str]:
        """The live jobs a journal entry names: its id, else the jobs of its name."""

    def active(self, jobids: Collection[str]) -> set[str]:
        """Those of `jobids` the scheduler still holds."""

    def collect(self, jobid: str, job: Job, prepared: Prepared, trace: Trace) -> Collected:
        """Make job.stdout/job.stderr hold the job's output; the final argv."""


@dataclass(frozen=True)
class Policy:
    """How the lifecycle treats one scheduler."""

    label: str  # how lines name the executor: "slurm executor"
    journal_suffix: str  # iter-N<suffix> beside the logs
    start_timeout_s: float | None = None  # None or 0: wait as long as the queue takes
    keeps_limit: bool = False  # the scheduler ends a job at its timeout itself, exactly
    # False: at its own deadline the harness stops following (no cancel); collect() releases
    reports_cancel: bool = True  # the end of a job the harness cancels is reported: follow it


def job_name(stdout: Path) -> str:
    """The job's name: the mode's log directory and the attempt (unique per attempt), so that
    a job whose id was never journaled can still be found."""
    return f"harness-{stdout.parent.name}-{stdout.name.removesuffix('.out')}"


def journal_path(stdout: Path, suffix: str) -> Path:
    """The journal of an iteration (not of an attempt): a rerun finds what a killed harness
    left for that iteration."""
    return stdout.with_name(stdout.name.split(".", 1)[0] + suffix)


def read_journal(path: Path) -> dict:
    try:
        entry = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return entry if isinstance(entry, dict) else {}


class Lifecycle:
    """Submit, journal, follow, collect and cancel the jobs of one executor (thread-safe)."""

    def __init__(
        self,
        backend: Backend,
        policy: Policy,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.policy = policy
        self.clock = clock  # the stamps' clock (epoch seconds)
        self.monotonic = monotonic  # the deadlines' clock
        self._lock = threading.Lock()
        self._live: dict[str, Path] = {}  # job id -> its journal, of the jobs in flight
        self._interrupted = False
        self._gone: str | None = None  # why the scheduler is gone (set by any thread)
        self._swept: set[Path] = set()
        self._sweep_lock = threading.Lock()  # held while a sweep waits: nothing submits

    # -- state -------------------------------------------------------------------------------
    def check(self) -> None:
        """Raise when the scheduler was lost: nothing more can run on it."""
        if self._gone is not None:
            raise HarnessError(self._gone)

    def _refuse_if_interrupted(self) -> None:
        if self._interrupted:
            raise HarnessError(f"{self.policy.label}: the run is being interrupted: no new job")

    # -- one job -----------------------------------------------------------------------------
    def run(self, job: Job) -> JobResult:
        self.check()
        b = self.backend
        stdout = Path(job.stdout)
        stdout.parent.mkdir(parents=True, exist_ok=True)
        self.sweep(stdout.parent)
        journal = journal_path(stdout, self.policy.journal_suffix)
        if journal.exists():  # this iteration's job of an earlier attempt
            self._cancel_journaled([journal], GONE_WAIT_S, strict=True)
        prepared = b.prepare(job, job_name(stdout))
        self._refuse_if_interrupted()
        entry = {"name": prepared.name, "jobid": None, **prepared.journal}
        atomic_write(journal, json.dumps(entry).encode())  # a name before the job exists
        trace = Trace("")
        trace.stamps[SUBMITTED] = self.clock()
        try:
            jobid, events = b.submit(prepared)
        except Refused:
            journal.unlink(missing_ok=True)
            raise
        except Unanswered:
            raise  # the journal stays: a rerun finds the job by its name
        except BaseException:  # interrupted mid-submission: the job may exist, by its name
            self._interrupted = True
            with contextlib.suppress(HarnessError, OSError):
                self._cancel_journaled([journal], CANCEL_WAIT_S, strict=False)
            raise
        trace.jobid = jobid
        atomic_write(journal, json.dumps({**entry, "jobid": jobid}).encode())
        with self._lock:
            self._live[jobid] = journal
            late = self._interrupted
        if late:  # cancel_all() ran while the job was submitted: it does not run
            self._stop({jobid: journal}, CANCEL_WAIT_S)
            self._refuse_if_interrupted()
        for ev in [*(Event(NOTE, record=r) for r in prepared.events), *events]:
            trace.add(ev)
        try:
            self._follow(trace, job)
        except BaseException:
            # Ctrl-C, SIGTERM, cancel_all() in another thread: the job does not outlive the
            # run. It stays in flight: cancel_all() waits until it is gone, then its journal.
            self._interrupted = True
            with contextlib.suppress(Exception):
                b.cancel([jobid], "interrupted")
            raise
        end = self.clock()
        with self._lock:
            self._live.pop(jobid, None)
        trace.settle(self._interrupted)
        collected = b.collect(jobid, job, prepared, trace)
        if trace.ended or collected.released:
            journal.unlink(missing_ok=True)
        queue_s, run_s = trace.timings(end)
        return JobResult(
            argv=collected.argv,
            exit_code=trace.exit_code,
            signal=trace.signal,
            timed_out=trace.timed_out,
            queue_s=queue_s,
            run_s=run_s,
            events=trace.events,
            fault=trace.fault,
            binds=prepared.binds,
            runtime=prepared.runtime,
        )

    def _follow(self, trace: Trace, job: Job) -> None:
        """Poll the job until it ends, enforcing the deadlines (see the module's docstring)."""
        policy, b = self.policy, self.backend
        submitted = self.monotonic()
        started = stop_by = None  # when it was seen started; the end of the drain
        while True:
            now = self.monotonic()
            if started is None and trace.started:  # (a submission may say so already)
                started = now
            if stop_by is None and trace.ending:
                stop_by = now + DRAIN_S
            until = self._deadline(job, submitted, started, stop_by)
            if until is not None and now >= until:
                if stop_by is not None:  # drained for long enough
                    trace.fault = trace.fault or Fault(
                        "lost-instance",
                        f"{policy.label}: job {trace.jobid} did not end within {DRAIN_S:g} s "
                        f"of {'its cancel' if trace.asked else 'its end'}",
                    )
                    return
                self._stop_for(trace, "start-timeout" if started is None else "timeout")
                if not policy.reports_cancel:
                    return  # the job's end is this harness's decision: collect() releases it
                stop_by = now + DRAIN_S
                continue
            for ev in b.poll(trace.jobid, until):
                trace.add(ev)
                if ev.kind == LOST:
                    self._lost(trace, ev)
                    return
            if trace.ended:
                return
            if self._interrupted:  # its job is cancelled on the way out
                raise HarnessError(f"{policy.label}: the run is being interrupted")

    def _stop_for(self, trace: Trace, why: str) -> None:
        """Cancel the job for a deadline of this harness (a start timeout is its fault)."""
        policy = self.policy
        if why == "start-timeout":
            state, words = self.backend.waiting(trace.jobid)
            trace.fault = trace.fault or Fault(
                "start-timeout",
                f"{policy.label}: job {trace.jobid} failed to start within "
                f"{policy.start_timeout_s:g} s ({words}): cancelled",
            )
            trace.events.append(
                {
                    "name": "start-timeout",
                    "timestamp": self.clock(),
                    "timeout_s": policy.start_timeout_s,
                    "state": state,
                    "jobid": trace.jobid,
                }
            )
        trace.asked = why
        trace.events.append(
            {"name": "cancel", "timestamp": self.clock(), "jobid": trace.jobid, "why": why}
        )
        if policy.reports_cancel:
            self.backend.cancel([trace.jobid], why)

    def _deadline(self, job: Job, submitted: float, started, stop_by) -> float | None:
        if stop_by is not None:
            return stop_by
        if started is None:
            limit = self.policy.start_timeout_s
            return submitted + limit if limit else None
        return None if self.policy.keeps_limit else started + job.timeout_s

    def _lost(self, trace: Trace, ev: Event) -> None:
        trace.fault = trace.fault or Fault("lost-instance", ev.detail)
        if ev.gone is not None:
            self._gone = ev.gone
            trace.ended = True  # the job went with its scheduler
            return
        with contextlib.suppress(HarnessError, OSError):
            self.backend.cancel([trace.jobid], "lost")
            trace.ended = not self._wait_gone({trace.jobid}, CANCEL_WAIT_S)

    # -- no job outlives the run ---------------------------------------------------------------
    def cancel_all(self) -> None:
        """Cancel every job in flight and wait (CANCEL_WAIT_S at most) until each is gone; the
        journals of those that are go. No run() submits after this."""
        with self._lock:
            self._interrupted = True
            live = dict(self._live)
        if live:
            with contextlib.suppress(HarnessError, OSError):
                self._stop(live, CANCEL_WAIT_S)

    def _stop(self, jobs: dict[str, Path], wait_s: float) -> set[str]:
        """Cancel `jobs` (id -> journal) and wait until they are gone; those still there after
        wait_s are returned. A gone job's journal goes and it is no longer in flight."""
        self.backend.cancel(list(jobs), "interrupted")
        left = self._wait_gone(set(jobs), wait_s)
        for jobid, journal in jobs.items():
            if jobid not in left:
                journal.unlink(missing_ok=True)
                with self._lock:
                    self._live.pop(jobid, None)
        return left

    def _wait_gone(self, jobids: set[str], wait_s: float) -> set[str]:
        deadline = time.monotonic() + wait_s
        while (left := self.backend.active(jobids)) and time.monotonic() < deadline:
            time.sleep(GONE_POLL_S)
        return left

    def sweep(self, directory: Path) -> None:
        """Once per log directory and run, before its first submission: cancel the jobs a
        killed harness left there (their journals remain) and wait until they are gone."""
        directory = directory.resolve()
        with self._sweep_lock:
            if directory not in self._swept:
                journals = sorted(directory.glob("*" + self.policy.journal_suffix))
                self._cancel_journaled(journals, GONE_WAIT_S, strict=True)
                self._swept.add(directory)

    def _cancel_journaled(self, journals: list[Path], wait_s: float, strict: bool) -> None:
        """Cancel what the journals name, wait until it is gone, then the journals go. With
        `strict`, a job still there after wait_s is a HarnessError (nothing new is submitted
        beside it)."""
        jobs: dict[str, Path] = {}
        for path in journals:
            entry = read_journal(path)
            found = self.backend.find(entry) if entry.get("name") else []
            jobs.update(dict.fromkeys(found, path))
            if not found:
                path.unlink(missing_ok=True)  # nothing of it is left
        if not jobs:
            return
        left = self._stop(jobs, wait_s)
        if left and strict:
            raise HarnessError(
                f"{self.policy.label}: job(s) left by an earlier run are still there "
                f"{wait_s:g} s after their cancel: {', '.join(sorted(left))}"
            )
