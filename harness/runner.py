"""The experiment loop: select -> pull -> run -> classify -> record, for N iterations of one mode.

Resumable: iterations already recorded in the outdir are skipped, so rerunning after a crash (or
`kill -9`) continues to --iters without a lost or duplicated record. Each iteration's choice comes
from an RNG seeded by (seed, mode, iteration), so a resumed run picks what the uninterrupted run
would have picked, and `--seed` reproduces a run.
"""

from __future__ import annotations

import fcntl
import os
import random
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from harness import host as hostmod
from harness import manifest, matching, modes, records
from harness.artifacts import ArtifactStore
from harness.classify import classify
from harness.errors import HarnessError
from harness.executors import Executor, Job, create
from harness.lammps_output import parse_figures
from harness.runtime import ImageCache, Pulled


@dataclass(frozen=True)
class RunConfig:
    manifests: Path
    mode: str
    iters: int
    outdir: Path
    seed: int | None = None
    executor: str = "local"
    launcher: str = "mpirun"
    np: int = 2
    mpi_model: str = "hybrid"
    timeout_s: float = 300.0
    host_file: Path | None = None
    cache: Path | None = None
    mode_file: Path | None = None
    sif_cache: Path | None = None
    max_concurrent: int = 1
    skip_invalid: bool = False
    matcher: str = "native"
    executor_options: dict = field(default_factory=dict)  # e.g. Flux URI, MiniCluster size


def pick(candidates: list[str], seed: int, mode: str, iteration: int) -> str:
    return random.Random(f"{seed}:{mode}:{iteration}").choice(candidates)


def prepare_outdir(outdir: Path) -> None:
    try:
        (outdir / "logs").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(f"outdir {outdir}: {exc.strerror}") from None
    if not os.access(outdir, os.W_OK):
        raise HarnessError(f"outdir {outdir}: not writable")
    records.repair(outdir)


# What a resumed run must share with the records already in the outdir for the same mode:
# otherwise two different experiments would be mixed under one name.
RESUME_FIELDS = ("executor", "launcher", "mpi_model", "np", "matcher", "candidates")


def previous_record(outdir: Path, mode: str) -> dict | None:
    return next((r for r in records.iter_raw(outdir) if r.get("mode") == mode), None)


def check_resume(cfg: RunConfig, before: dict | None, now: dict) -> int:
    """The seed to use; a HarnessError when the outdir holds this mode run another way."""
    if before is None:
        return cfg.seed if cfg.seed is not None else secrets.randbelow(2**31)
    # a field an older record lacks (written before the field existed) is not compared
    keys = [k for k in ("seed", *RESUME_FIELDS) if now.get(k) is not None and k in before]
    differs = [k for k in keys if before.get(k) != now[k]]
    if differs:
        key = differs[0]
        was = before.get(key)
        shown = f"{len(was or [])} other candidates" if key == "candidates" else was
        raise HarnessError(
            f"outdir {cfg.outdir} already holds mode {cfg.mode} run with {key} {shown}; "
            f"rerun it the same way to resume, or use another outdir"
        )
    return int(before["seed"])


@dataclass
class Experiment:
    """Everything fixed for one run of one mode: what a single iteration needs."""

    cfg: RunConfig
    host: dict[str, str]
    allowed: list[matching.Verdict]
    select_s: float
    seed: int
    executor: Executor
    images: ImageCache
    skipped: dict[str, str]  # images excluded for an invalid artifact (--skip-invalid)

    def iteration(self, i: int) -> records.Record:
        cfg = self.cfg
        wrapper_start = time.perf_counter()
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        t = time.perf_counter()
        names = [v.image.name for v in self.allowed]
        choice = self.allowed[names.index(pick(names, self.seed, cfg.mode, i))]
        pick_s = time.perf_counter() - t
        image = choice.image
        model = image.mpi_model or cfg.mpi_model
        logs = cfg.outdir / "logs" / cfg.mode
        logs.mkdir(parents=True, exist_ok=True)
        stdout, stderr = logs / f"iter-{i:04d}.out", logs / f"iter-{i:04d}.err"
        if self.executor.needs_sif:
            pulled = self.images.pull(image.name)
        else:  # the executor's nodes pull the image themselves
            pulled = Pulled(Path(image.name), None, 0.0, True)
        result = None
        figures: dict = {}
        if pulled.path is None:
            stdout.write_text("")
            stderr.write_text(pulled.error + "\n")
            # The runtime may refuse an image at pull time for a reason of its own (Apptainer
            # verifies a SIF's architecture while pulling): keep that reason, else `pull`.
            verdict = classify(pulled.error)
            if verdict.reason in ("unknown", "success"):
                reason, evidence = "pull", _last_line(pulled.error)
            else:
                reason, evidence = verdict.reason, verdict.evidence
        else:
            job = Job(
                pulled.path,
                image.command,
                cfg.np,
                image.workdir,
                model,
                cfg.timeout_s,
                stdout,
                stderr,
                image=image.name,
                flux=image.flux,
            )
            result = self.executor.run(job)
            out = stdout.read_text(errors="replace")
            text = out + "\n" + stderr.read_text(errors="replace")
            verdict = classify(
                text, exit_code=result.exit_code, ranks=cfg.np, timed_out=result.timed_out
            )
            reason, evidence = verdict.reason, verdict.evidence
            figures = parse_figures(out)
        return records.Record(
            iteration=i,
            mode=cfg.mode,
            seed=self.seed,
            host=self.host,
            candidates=names,
            image=image.name,
            artifact=image.artifact,
            artifact_digest=choice.artifact_digest,
            image_digest=pulled.digest,
            matcher=cfg.matcher,
            executor=self.executor.name,
            launcher=self.executor.launcher,
            mpi_model=model,
            np=cfg.np,
            argv=result.argv if result else [],
            exit_code=result.exit_code if result else None,
            signal=result.signal if result else None,
            timed_out=result.timed_out if result else False,
            pulled=not pulled.cached and pulled.path is not None,
            timings=records.Timings(
                select_s=round(self.select_s + pick_s, 6),
                pull_s=round(pulled.seconds, 6),
                queue_s=round(result.queue_s, 6) if result else 0.0,
                run_s=round(result.run_s, 6) if result else 0.0,
                wrapper_s=round(time.perf_counter() - wrapper_start, 6),
            ),
            stdout_path=str(stdout),
            stderr_path=str(stderr),
            figures=figures,
            reason=reason,
            evidence=evidence,
            started_at=started_at,
            events=result.events if result else [],
        )


def prepare(cfg: RunConfig) -> Experiment:
    """Check the input and the tools, select the candidates: everything before iteration 0."""
    if cfg.iters < 1:
        raise HarnessError("--iters must be at least 1")
    if cfg.np < 1:
        raise HarnessError("--np must be at least 1")
    if cfg.max_concurrent < 1:
        raise HarnessError("--max-concurrent must be at least 1")
    images = manifest.load(cfg.manifests)
    mode = modes.resolve(cfg.mode, cfg.mode_file)
    executor = create(cfg.executor, cfg.launcher, cfg.executor_options)
    executor.preflight()
    host = hostmod.resolve(cfg.host_file, cfg.launcher)
    t0 = time.perf_counter()
    store = ArtifactStore(cache=cfg.cache, skip_invalid=cfg.skip_invalid)
    allowed = matching.select(cfg.matcher, cfg.manifests, images, mode, host, store)
    select_s = time.perf_counter() - t0
    cache = ImageCache(cfg.sif_cache)
    if executor.needs_sif:
        cache.check_registries([v.image.name for v in allowed])
    if cfg.timeout_s <= 0:
        raise HarnessError("--timeout must be a positive number of seconds")
    prepare_outdir(cfg.outdir)  # only now: bad input above leaves nothing behind
    before = previous_record(cfg.outdir, cfg.mode)
    # the model that record's image would get now (an image may set its own)
    image_model = {v.image.name: v.image.mpi_model for v in allowed}.get(
        (before or {}).get("image")
    )
    now = {
        "seed": cfg.seed,
        "executor": executor.name,
        "launcher": executor.launcher,
        "mpi_model": image_model or cfg.mpi_model,
        "np": cfg.np,
        "matcher": cfg.matcher,
        "candidates": [v.image.name for v in allowed],
    }
    seed = check_resume(cfg, before, now)
    return Experiment(cfg, host, allowed, select_s, seed, executor, cache, store.skipped)


def run(
    cfg: RunConfig,
    on_record: Callable[[records.Record], None] | None = None,
    on_skip: Callable[[dict[str, str]], None] | None = None,
) -> Counter:
    """Run the missing iterations of one mode; returns the count per reason of this call.

    With max_concurrent K > 1, up to K iterations are in flight at once (the executor, e.g.
    Flux, places them); records are still appended one per iteration in iteration order.
    """
    exp = prepare(cfg)
    if on_skip and exp.skipped:
        on_skip(exp.skipped)
    with _mode_lock(cfg.outdir, cfg.mode):
        return _iterate(cfg, exp, on_record)


@contextmanager
def _mode_lock(outdir: Path, mode: str) -> Iterator[None]:
    """One writer per (outdir, mode): a detached run and a manual rerun must not both append."""
    with (outdir / f".lock-{mode}").open("w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise HarnessError(
                f"another harness run is writing mode {mode} in {outdir}; wait for it, or use "
                "another outdir"
            ) from None
        yield


def _iterate(
    cfg: RunConfig, exp: Experiment, on_record: Callable[[records.Record], None] | None
) -> Counter:
    done = records.completed_iterations(cfg.outdir, cfg.mode)
    todo = [i for i in range(cfg.iters) if i not in done]
    counts: Counter = Counter()

    def save(rec: records.Record) -> None:
        if any(e.get("name") == "dry-run" for e in rec.events):
            return  # nothing ran: the rendered job is the output, not a record
        records.append(cfg.outdir, rec)
        counts[rec.reason] += 1
        if on_record:
            on_record(rec)

    if cfg.max_concurrent == 1:
        for i in todo:
            save(exp.iteration(i))
        return counts
    pool = ThreadPoolExecutor(max_workers=cfg.max_concurrent)
    try:
        # map() yields in submission order: a finished later iteration waits for earlier ones.
        for rec in pool.map(exp.iteration, todo):
            save(rec)
    except BaseException:
        # Interrupted: drop what has not started, stop what runs (its iteration is redone
        # on resume: nothing of it was recorded).
        pool.shutdown(wait=False, cancel_futures=True)
        if cancel := getattr(exp.executor, "cancel_all", None):
            cancel()
        raise
    pool.shutdown()
    return counts


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
