"""`harness run --executor flux --detach`: the harness itself submitted as a Flux job, and the
state of such jobs for `harness status`."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from harness.errors import HarnessError
from harness.run.executors.flux_api import bindings, connect, instance_cores
from harness.run.executors.flux_jobspec import jobspec_for

DETACH_FILE = "flux-detached.json"  # the detached harness jobs of an outdir, one per line


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
    job_cores: int = 1,
) -> str:
    """Submit `harness <argv>` (a `run` command line, --detach removed) as a Flux job of one
    task; returns its job id (f58). The harness job submits the iterations to the same
    instance, each `job_cores` cores. Its own output goes to OUTDIR/flux-harness-<id>.log, and
    OUTDIR/flux-detached.json records the job (with its mode and target) for `status()`."""
    flux = bindings()
    argv = _strip_detach(argv)
    outdir = Path(outdir).resolve()
    h = connect(uri)
    _check_room(h, cores, job_cores)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(f"outdir {outdir}: {exc.strerror}") from None
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


def _check_room(h, cores: int, job_cores: int) -> None:
    """Refuse a run whose jobs could never start beside its harness: the harness job holds
    its cores until the run ends, so an instance of fewer cores than both would leave every
    iteration queued until --start-timeout cancels it (e.g. `flux start` on 2 cores, --np 2)."""
    total = instance_cores(h)
    if total is None:
        raise HarnessError("detach: the instance does not say how many cores it has")
    if total < cores + job_cores:
        raise HarnessError(
            f"detach: the instance has {total} core(s); the harness job holds {cores} and each "
            f"job of the run needs {job_cores}, so no job could start beside it (run without "
            "--detach, lower --np, or use a larger instance)"
        )


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
