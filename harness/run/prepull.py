"""Pull every image of a manifest into the SIF cache of every node, before a run.

`prepull(manifest)` submits one Flux job per node (broker rank, pinned with a `ranks`
constraint) that runs this module as a worker: the worker pulls each image through
`harness.run.runtime.ImageCache` (the same cache, keyed by reference and digest, that `harness run`
uses) and prints one JSON line per image. The caller collects those lines from each job's output
and returns one PullResult per (node, image): seconds, whether it was already cached, the
puller's error. Idempotent: a second prepull finds every image cached and pulls nothing.

With a cache on a filesystem shared by all nodes, `per_node=False` submits a single job.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.run.runtime import ImageCache
from harness.select import manifest

WORKER_MARK = "prepull:"


@dataclass
class PullResult:
    node: str
    rank: int | None
    image: str
    ok: bool
    cached: bool
    seconds: float
    path: str | None
    error: str = ""


def pull_all(manifest_path: Path, sif_cache: Path | None) -> list[PullResult]:
    """Pull every image of the manifest here, into sif_cache (the worker's job)."""
    cache = ImageCache(sif_cache)
    host = socket.gethostname()
    broker = os.environ.get("HARNESS_PREPULL_RANK")  # set by prepull() for its node's job
    rank = int(broker) if broker is not None else None
    out = []
    for image in manifest.load(manifest_path):
        pulled = cache.pull(image.name)
        out.append(
            PullResult(
                node=host,
                rank=rank,
                image=image.name,
                ok=pulled.path is not None,
                cached=pulled.cached,
                seconds=round(pulled.seconds, 3),
                path=str(pulled.path) if pulled.path else None,
                error=pulled.error,
            )
        )
    return out


def _worker_command(manifest_path: Path, sif_cache: Path | None) -> list[str]:
    argv = [sys.executable, "-m", "harness.run.prepull", "--worker"]
    argv += ["--manifests", str(manifest_path)]
    if sif_cache is not None:
        argv += ["--sif-cache", str(sif_cache)]
    return argv


def prepull(
    manifest_path: str | Path,
    sif_cache: str | Path | None = None,
    *,
    uri: str | None = None,
    per_node: bool = True,
    timeout_s: float = 3600.0,
) -> list[PullResult]:
    """Submit the pull jobs (one per up broker rank, or one) and collect what each pulled."""
    from harness.run.executors.flux_api import bindings, connect
    from harness.run.executors.flux_jobspec import jobspec_for

    bindings()  # a HarnessError saying how to install them when they are missing
    import flux
    import flux.job
    import flux.job.output
    import flux.resource

    manifest_path = Path(manifest_path).resolve()
    manifest.load(manifest_path)  # bad manifest: one line, before anything is submitted
    cache = Path(sif_cache).resolve() if sif_cache else None
    h = connect(uri)
    try:
        up = flux.resource.resource_list(h).get().up
    except OSError as exc:
        raise HarnessError(f"prepull: cannot list the instance's resources: {exc}") from None
    ranks = list(up.ranks) if per_node else [None]
    if not ranks:
        raise HarnessError("prepull: the instance has no node up")
    jobs = []
    for rank in ranks:
        env = dict(os.environ)
        if rank is not None:
            env["HARNESS_PREPULL_RANK"] = str(rank)
        js = jobspec_for(
            _worker_command(manifest_path, cache),
            num_tasks=1,
            duration=timeout_s,
            environment=env,
            cwd=os.getcwd(),
            name="harness-prepull",
        )
        if rank is not None:
            js.setattr("system.constraints", {"ranks": [str(rank)]})
        try:
            jobs.append((rank, flux.job.submit(h, js)))
        except OSError as exc:
            raise HarnessError(f"prepull: submit refused: {exc.strerror or exc}") from None
    results: list[PullResult] = []
    for rank, jobid in jobs:
        results.extend(_collect(flux, h, rank, jobid))
    return results


def _collect(flux, h, rank, jobid) -> list[PullResult]:
    info = flux.job.result(h, jobid)
    try:
        out = flux.job.output.job_output(h, jobid)
        stdout, stderr = out.stdout, out.stderr + out.log
    except (OSError, flux.job.JobException) as exc:
        stdout, stderr = "", str(exc)
    found = []
    for line in stdout.splitlines():
        if line.startswith(WORKER_MARK):
            found.append(PullResult(**json.loads(line[len(WORKER_MARK) :])))
    if info.result != "COMPLETED" or not found:
        lines = [s for s in stderr.splitlines() if s.strip()]
        why = lines[-1] if lines else f"job {flux.job.JobID(jobid).f58} {info.result}"
        found.append(
            PullResult(
                node=f"rank {rank}" if rank is not None else "?",
                rank=rank,
                image="*",
                ok=False,
                cached=False,
                seconds=0.0,
                path=None,
                error=f"pull job {info.result}: {why}",
            )
        )
    return found


def error_line(error: str) -> str:
    """The line of a puller's error that says what went wrong: Apptainer's own `FATAL:` or
    `ERROR:` line (its first lines are often INFO or WARNING chatter), else the first line."""
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    for line in lines:
        if re.match(r"(FATAL|ERROR)\b", line) or re.search(r"\b(FATAL|ERROR):", line):
            return line
    return lines[0] if lines else ""


def format_report(results: list[PullResult]) -> str:
    rows = [["node", "rank", "image", "result", "seconds", "error"]]
    for r in results:
        state = ("cached" if r.cached else "pulled") if r.ok else "FAILED"
        rows.append(
            [
                r.node,
                "-" if r.rank is None else str(r.rank),
                r.image,
                state,
                f"{r.seconds:.1f}",
                error_line(r.error),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="harness prepull")
    p.add_argument(
        "--manifests",
        dest="manifest",
        type=Path,
        default=manifest.default_path(),
        help="the images to pull (default: $HARNESS_MANIFESTS, else manifests.yaml)",
    )
    p.add_argument("--sif-cache", type=Path, help="where the SIF images go on each node")
    p.add_argument("--worker", action="store_true", help="pull here (what each Flux job runs)")
    p.add_argument("--one-job", action="store_true", help="one job, for a shared cache")
    args = p.parse_args(argv)
    try:
        if args.worker:
            for r in pull_all(args.manifest, args.sif_cache):
                print(WORKER_MARK + json.dumps(asdict(r)), flush=True)
            return 0
        results = prepull(args.manifest, args.sif_cache, per_node=not args.one_job)
    except HarnessError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return 2
    print(format_report(results))
    return 1 if any(not r.ok for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
