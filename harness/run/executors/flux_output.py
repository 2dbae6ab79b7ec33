"""What a Flux job left, gathered after its end: its output (written by the job shell, or read
from the job's KVS output eventlog), its exceptions as `flux job attach` prints them, and the
temporary directory its shell made (for the argv the record keeps)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from harness.run.executors import flux_api as fa
from harness.run.executors.core import SUBMITTED, Trace


def write_output(h, jobid: str, stdout: Path, stderr: Path, kvs: bool, trace: Trace) -> None:
    """Make stdout/stderr hold the job's output, then its exceptions as `flux job attach`
    prints them (the evidence Flux itself gives for a failed start). `h` is None when the
    instance is gone."""
    import flux.job

    tail: list[str] = []
    if kvs:
        try:
            if h is None:
                raise OSError("the instance is gone")
            with fa.signals_kept(h):
                out = flux.job.output.job_output(h, flux.job.JobID(jobid))
            stdout.write_text(out.stdout)
            stderr.write_text(out.stderr + out.log)
        except (OSError, flux.job.JobException):
            stdout.write_text("")
            stderr.write_text("")
    else:
        missing = [p for p in (stdout, stderr) if not p.exists()]
        for path in missing:
            path.write_text("")
        if missing and h is not None and trace.started:  # written on a node not sharing them
            tail.append(
                f"flux executor: job {jobid} ran but its output "
                f"{' and '.join(map(str, missing))} is not visible here "
                f"(outdir not shared with the job's nodes: use output 'kvs')"
            )
    t0 = trace.stamps.get(SUBMITTED, 0.0)
    for e in trace.events:
        if e.get("name") == "exception":
            c = e["context"]
            tail.append(
                f"{e['timestamp'] - t0:.3f}s: job.exception {jobid} "
                f"type={c.get('type')} severity={c.get('severity')} {c.get('note', '')}"
            )
    if tail:
        with stderr.open("a", encoding="utf-8") as fh:
            fh.write("".join(line + "\n" for line in tail))


def job_tmpdir(h, jobid: str, job_env: dict, rundirs: dict[int, str]) -> str | None:
    """FLUX_JOB_TMPDIR of the job's shell rank 0, as the shell made it (src/shell/tmpdir.c of
    flux-core): `jobtmp-0-ID` in the rundir of the broker that ran shell rank 0 (the exec
    eventlog's `shell.init` names it; `rundirs` caches them by rank), or in $TMPDIR (default
    /tmp) when the job's user does not own the instance. Other nodes' ranks had their own;
    None if unknown."""
    import flux.job

    leader = None
    try:
        watcher = flux.job.event_watch_async(h, flux.job.JobID(jobid), "guest.exec.eventlog")
        deadline = time.monotonic() + 10.0
        while fa.wait(h, watcher, deadline - time.monotonic()):
            with fa.signals_kept(h):
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
            base = job_env.get("TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
        else:
            if leader not in rundirs:
                reply = fa.get(h, h.rpc("attr.get", {"name": "rundir"}, nodeid=leader), "get")
                rundirs[leader] = reply["value"]
            base = rundirs[leader]
    except (OSError, RuntimeError, KeyError, ValueError):
        return None
    return f"{base}/jobtmp-0-{jobid}"
