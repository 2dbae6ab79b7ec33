"""The experiment loop: for N iterations of one mode, a short chain of named, timed steps.

    pick -> acquire -> launch -> judge -> record

`pick` chooses the iteration's image, `acquire` pulls it as a SIF (or leaves it to the
executor's nodes), `launch` runs the job through the executor and follows it to its end, `judge`
classifies the outcome from the job's output and the executor's typed fault, `record` appends
one line to records.jsonl. Each step's seconds go into the record (`steps`), and a failed
iteration names the step that failed (`stage`), as ReFrame's pipeline does.

Resumable: iterations already recorded in the outdir are skipped, so rerunning after a crash (or
`kill -9`) continues to --iters without a lost or duplicated record; an iteration whose reason
does not count toward a success rate (`infra`: the infrastructure failed, not the image) is
redone. Each iteration's choice comes from an RNG seeded by (seed, mode, iteration), so a
resumed run picks what the uninterrupted run would have picked, and `--seed` reproduces a run.

A census (`census()`) is the same loop over every image of the manifest in turn: mode `census`,
iteration i runs image i mod n of a seeded order, and `census.json` keeps each mode's candidate
set on the census's host, from which the report computes each mode's expected success rate.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import random
import secrets
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from harness import records
from harness.errors import HarnessError
from harness.files import atomic_write
from harness.judge.application import parse_figures
from harness.judge.classify import classify
from harness.judge.faults import Fault
from harness.judge.reasons import counts_in_rate
from harness.run.executors import Executor, Job, JobResult, create
from harness.run.loadcheck import loader_failure
from harness.run.runtime import ImageCache, Pulled
from harness.select import host as hostmod
from harness.select import manifest, matching, modes
from harness.select.artifacts import ArtifactStore

CENSUS, CENSUS_FILE, CENSUS_SCHEMA = records.CENSUS, records.CENSUS_FILE, records.CENSUS_SCHEMA
STEPS = ("pick", "acquire", "launch", "judge")
# Reasons that may be the symptom of a bound library that does not load in the image (an MPI
# or PMI that fails to initialise, or a failure no rule names); not e.g. mpi-singleton, where
# the image's MPI never loads the bound library at all.
SYMPTOMS = ("mpi", "unknown")
MIN_FREE_BYTES = 64 * 1024  # below this the job's logs may have been cut short by the disk
T = TypeVar("T")


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
    mpi_model: str = "bind"
    timeout_s: float = 300.0
    host_file: Path | None = None
    cache: Path | None = None
    mode_file: Path | None = None
    sif_cache: Path | None = None
    max_concurrent: int = 1
    skip_invalid: bool = False
    matcher: str = "native"
    executor_options: dict = field(default_factory=dict)  # e.g. Flux URI, MiniCluster size
    repeat: int = 1  # census only: runs of each image
    runtime_options: tuple[str, ...] = ()  # extra `apptainer exec` argv for every image
    launcher_options: tuple[str, ...] = ()  # extra MPI launcher argv


def pick(candidates: list[str], seed: int, mode: str, iteration: int) -> str:
    return random.Random(f"{seed}:{mode}:{iteration}").choice(candidates)


def census_order(names: list[str], seed: int) -> list[str]:
    """The census's order of images: a seeded shuffle, so that slow drifts of the machine do
    not line up with the manifest's order; every pass runs each image once."""
    order = list(names)
    random.Random(f"{seed}:{CENSUS}").shuffle(order)
    return order


def prepare_outdir(outdir: Path) -> None:
    try:
        (outdir / "logs").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(f"outdir {outdir}: {exc.strerror}") from None
    if not os.access(outdir, os.W_OK):
        raise HarnessError(f"outdir {outdir}: not writable")


# What a resumed run must share with the records already in the outdir for the same mode:
# otherwise two different experiments would be mixed under one name.
RESUME_FIELDS = ("executor", "launcher", "mpi_model", "np", "matcher", "candidates")


def check_resume(cfg: RunConfig, before: records.Record | None, now: dict) -> int:
    """The seed to use; a HarnessError when the outdir holds this mode run another way."""
    if before is None:
        return cfg.seed if cfg.seed is not None else secrets.randbelow(2**31)
    was_fields = {"seed": before.seed, **{k: getattr(before, k) for k in RESUME_FIELDS}}
    differs = [
        k for k in ("seed", *RESUME_FIELDS) if now.get(k) is not None and was_fields[k] != now[k]
    ]
    if differs:
        key = differs[0]
        was = was_fields[key]
        shown = f"{len(was or [])} other candidates" if key == "candidates" else was
        raise HarnessError(
            f"outdir {cfg.outdir} already holds mode {cfg.mode} run with {key} {shown}; "
            f"rerun it the same way to resume, or use another outdir"
        )
    return before.seed


class _Steps:
    """Times the named steps of one iteration, and says when each starts (progress display)."""

    def __init__(self, announce: Callable[[str], None] | None = None) -> None:
        self.seconds: dict[str, float] = {}
        self.announce = announce

    def __call__(self, name: str, work: Callable[[], T]) -> T:
        if self.announce:
            self.announce(name)
        t = time.perf_counter()
        try:
            return work()
        finally:  # a step may run in parts (judge, then the loader check): add them up
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - t, 6)


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
    gpu_flags: dict[str, list[str]] = field(default_factory=dict)  # image -> e.g. ["--nv"]
    # called as (iteration, image, step) when a step starts: what a progress display shows
    on_step: Callable[[int, str, str], None] | None = None

    def choose(self, i: int) -> matching.Verdict:
        names = [v.image.name for v in self.allowed]
        if self.cfg.mode == CENSUS:
            name = census_order(names, self.seed)[i % len(names)]
        else:
            name = pick(names, self.seed, self.cfg.mode, i)
        return self.allowed[names.index(name)]

    def acquire(self, name: str) -> Pulled:
        if self.executor.caps.pulls_image:  # the executor's nodes pull it themselves
            return Pulled(Path(name), None, 0.0, True)
        return self.images.pull(name)

    def job_for(self, image: manifest.Image, sif: Path, stdout: Path, stderr: Path) -> Job:
        """The job that runs `image` (pulled to `sif`) under this experiment's settings."""
        cfg = self.cfg
        return Job(
            sif,
            image.command,
            cfg.np,
            image.workdir,
            image.mpi_model or cfg.mpi_model,
            cfg.timeout_s,
            stdout,
            stderr,
            image=image.name,
            flux=image.flux,
            runtime_options=(
                *image.runtime_options,
                *cfg.runtime_options,
                *self.gpu_flags.get(image.name, ()),
            ),
            launcher_options=(*image.launcher_options, *cfg.launcher_options),
            mode=cfg.mode,
        )

    def preview(self, i: int) -> str:
        """What iteration i would run (a dry run): its image and the executor's job, with the
        image named as it would be pulled. Nothing is pulled, run or written."""
        image = self.choose(i).image
        stdout, stderr = attempt_paths(self.cfg.outdir, self.cfg.mode, i, create=False)
        job = self.job_for(image, Path(image.name), stdout, stderr)
        return f"{self.cfg.mode} {i}: {image.name}\n{self.executor.preview(job)}"

    def iteration(self, i: int) -> records.Record:
        """One iteration, through its steps."""
        cfg = self.cfg
        wrapper_start = time.perf_counter()
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        step = _Steps()
        choice = step("pick", lambda: self.choose(i))
        image = choice.image
        if self.on_step:
            step.announce = lambda name: self.on_step(i, image.name, name)
        model = image.mpi_model or cfg.mpi_model
        stdout, stderr = attempt_paths(cfg.outdir, cfg.mode, i)
        pulled = step("acquire", lambda: self.acquire(image.name))
        result: JobResult | None = None
        if pulled.path is None:
            stdout.write_text("")
            stderr.write_text(pulled.error + "\n")
            fault = Fault("registry-unreachable" if pulled.unreachable else "pull", pulled.error)
            stage = "acquire"
        else:
            job = self.job_for(image, pulled.path, stdout, stderr)
            result = step("launch", lambda: self.executor.run(job))
            check_space(stdout.parent)
            fault = result.fault
            stage = "launch"
        out = stdout.read_text(errors="replace")
        text = out + "\n" + stderr.read_text(errors="replace")
        verdict = step(
            "judge",
            lambda: classify(
                text,
                exit_code=result.exit_code if result else None,
                ranks=cfg.np,
                timed_out=result.timed_out if result else False,
                fault=fault,
            ),
        )
        if verdict.reason in SYMPTOMS and result is not None and result.binds and fault is None:
            verdict = step("judge", lambda: cause_of(verdict, result, pulled.path))
        return records.Record(
            iteration=i,
            mode=cfg.mode,
            seed=self.seed,
            host=self.host,
            candidates=[v.image.name for v in self.allowed],
            image=image.name,
            artifact=image.artifact,
            artifact_digest=choice.artifact_digest,
            image_digest=pulled.digest,
            matcher=cfg.matcher,
            executor=self.executor.name,
            executor_version=self.executor.version,
            launcher=self.executor.launcher,
            mpi_model=model,
            np=cfg.np,
            argv=result.argv if result else [],
            exit_code=result.exit_code if result else None,
            signal=result.signal if result else None,
            timed_out=result.timed_out if result else False,
            pulled=not pulled.cached and pulled.path is not None,
            timings=records.Timings(
                select_s=round(self.select_s + step.seconds["pick"], 6),
                pull_s=round(pulled.seconds, 6),
                queue_s=round(result.queue_s, 6) if result else 0.0,
                run_s=round(result.run_s, 6) if result else 0.0,
                wrapper_s=round(time.perf_counter() - wrapper_start, 6),
            ),
            stdout_path=str(stdout),
            stderr_path=str(stderr),
            figures=parse_figures(out) if result else {},
            reason=verdict.reason,
            evidence=verdict.evidence,
            source=verdict.source,
            note=verdict.note,
            fault=fault.to_dict() if fault else None,
            started_at=started_at,
            events=result.events if result else [],
            steps=step.seconds,
            stage=None if verdict.reason == "success" else stage,
        )


def cause_of(verdict, result: JobResult, sif: Path):
    """A failed job with host files bound in: when the image's loader cannot load one of them,
    that is the cause (os-abi, the loader's line as evidence) and the job's own line the
    symptom, kept in the note."""
    line = loader_failure(result.runtime or "apptainer", sif, result.binds)
    if line is None:
        return verdict
    symptom = f"symptom ({verdict.reason}): {verdict.evidence}"
    return replace(verdict, reason="os-abi", evidence=line, note=symptom, source="application")


def attempt_paths(outdir: Path, mode: str, i: int, create: bool = True) -> tuple[Path, Path]:
    """Fresh stdout/stderr paths for one attempt of an iteration: a job left behind by an
    earlier attempt can never write into the logs a record points to."""
    logs = outdir / "logs" / mode
    if create:
        logs.mkdir(parents=True, exist_ok=True)
    stem = f"iter-{i:04d}.{uuid.uuid4().hex[:8]}"
    return logs / f"{stem}.out", logs / f"{stem}.err"


def _select(cfg: RunConfig, images, host, store) -> tuple[list[matching.Verdict], float]:
    t0 = time.perf_counter()
    if cfg.mode == CENSUS:  # every image, whatever its artifact says
        allowed = [matching.Verdict(image, (), None) for image in images]
    else:
        mode = modes.resolve(cfg.mode, cfg.mode_file)
        allowed = matching.select(cfg.matcher, cfg.manifests, images, mode, host, store)
    return allowed, time.perf_counter() - t0


def check_options(cfg: RunConfig) -> None:
    if cfg.repeat < 1:
        raise HarnessError("--repeat must be at least 1")
    if cfg.iters < 1:
        raise HarnessError("--iters must be at least 1")
    if cfg.np < 1:
        raise HarnessError("--np must be at least 1")
    if cfg.max_concurrent < 1:
        raise HarnessError("--max-concurrent must be at least 1")
    if not cfg.timeout_s > 0 or cfg.timeout_s == float("inf"):  # also refuses nan
        raise HarnessError("--timeout must be a finite positive number of seconds")
    if not modes.NAME.match(cfg.mode):
        raise HarnessError(f"mode name {cfg.mode!r}: use letters, digits, '.', '_' and '-'")


def prepare(cfg: RunConfig, dry_run: bool = False) -> Experiment:
    """Check the input and the tools, select the candidates: everything before iteration 0.
    A dry run writes nothing (no outdir, no census.json)."""
    check_options(cfg)
    images = manifest.load(cfg.manifests)
    if cfg.mode != CENSUS:
        modes.resolve(cfg.mode, cfg.mode_file)
    executor = create(cfg.executor, cfg.launcher, cfg.executor_options)
    if not dry_run:  # a preview asks for what it shows (e.g. a MiniCluster needs no cluster)
        executor.preflight()
    host = hostmod.resolve(cfg.host_file, cfg.launcher)
    if cfg.host_file is None and executor.caps.describes_host:  # e.g. Slurm's MPI set
        host = executor.describe_host(host)
    store = ArtifactStore(cache=cfg.cache, skip_invalid=cfg.skip_invalid)
    allowed, select_s = _select(cfg, images, host, store)
    cache = ImageCache(cfg.sif_cache)
    if not executor.caps.pulls_image and not dry_run:  # a preview pulls nothing
        cache.check_registries([v.image.name for v in allowed])
    census_sets = candidate_sets(cfg, images, host, store) if cfg.mode == CENSUS else None
    previous = records.of_mode(cfg.outdir, cfg.mode)
    if not dry_run:
        prepare_outdir(cfg.outdir)  # only now: bad input above leaves nothing behind
    before = previous[0] if previous else None
    # the model that record's image would get now (an image may set its own)
    image_model = {v.image.name: v.image.mpi_model for v in allowed}.get(
        before.image if before else None
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
    if census_sets is not None and not dry_run:
        write_census(cfg, host, census_sets, [v.image.name for v in allowed], seed)
    exp = Experiment(cfg, host, allowed, select_s, seed, executor, cache, store.skipped)
    exp.gpu_flags = gpu_flags([v.image for v in allowed], store, hostmod.gpu_runtime_flags())
    return exp


def gpu_flags(images, store: ArtifactStore, flags: list[str]) -> dict[str, list[str]]:
    """`flags` (this machine's --nv/--rocm) for the images whose artifact says they use a GPU:
    without them a GPU image cannot reach the driver even on a GPU node."""
    if not flags:
        return {}
    wanted = {}
    for image in images:
        try:
            artifact = store.get(image.name, image.artifact)
        except HarnessError:
            continue  # no artifact, no claim: the image runs as it is
        gpu = (artifact.attributes if artifact else {}).get(hostmod.GPU, "no")
        if gpu.strip().lower() in matching.YES:
            wanted[image.name] = flags
    return wanted


def candidate_sets(cfg: RunConfig, images, host, store) -> dict[str, dict[str, Any]]:
    """Every known mode's candidates on this host (the census's expected rates need them)."""
    sets: dict[str, dict[str, Any]] = {}
    for name, mode in modes.load(cfg.mode_file).items():
        try:
            verdicts = matching.select(cfg.matcher, cfg.manifests, images, mode, host, store)
        except HarnessError as exc:  # e.g. the host lacks a key the mode needs: say so
            sets[name] = {"candidates": None, "error": str(exc)}
            continue
        sets[name] = {"candidates": [v.image.name for v in verdicts]}
    return sets


def write_census(cfg: RunConfig, host, sets, images: list[str], seed: int) -> None:
    body = {
        "schema": CENSUS_SCHEMA,
        "manifests": str(cfg.manifests),
        "host": host,
        "images": images,
        "repeat": cfg.repeat,
        "seed": seed,
        "modes": sets,
    }
    atomic_write(cfg.outdir / CENSUS_FILE, (json.dumps(body, indent=2) + "\n").encode())


def run(
    cfg: RunConfig,
    on_record: Callable[[records.Record], None] | None = None,
    on_skip: Callable[[dict[str, str]], None] | None = None,
) -> Counter:
    """Run the missing iterations of one mode; returns the count per reason of this call."""
    exp = prepare(cfg)
    if on_skip and exp.skipped:
        on_skip(exp.skipped)
    return execute(exp, on_record)


def execute(exp: Experiment, on_record: Callable[[records.Record], None] | None = None) -> Counter:
    """The iterations of a prepared experiment, under the mode's lock.

    With max_concurrent K > 1, up to K iterations are in flight at once (the executor, e.g.
    Flux, places them); records are still appended one per iteration in iteration order. A full
    disk anywhere in an iteration stops the run with one line, writing no record for it.
    """
    cfg = exp.cfg
    try:
        with _mode_lock(cfg.outdir, cfg.mode):
            records.repair(cfg.outdir)  # under the lock: nobody else is mid-append
            return _iterate(cfg, exp, on_record)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        where = exc.filename or cfg.outdir
        raise HarnessError(f"no space left on {where}: free space and rerun to resume") from None


def preview(exp: Experiment) -> Iterator[str]:
    """A dry run: what each iteration still to run would run, from the picks a real run makes."""
    for i in todo_iterations(records.of_mode(exp.cfg.outdir, exp.cfg.mode), exp.cfg.iters):
        yield exp.preview(i)


def census(cfg: RunConfig, **kwargs) -> Counter:
    """Run every image of the manifest `cfg.repeat` times (mode `census`)."""
    return run(census_config(cfg), **kwargs)


def census_config(cfg: RunConfig) -> RunConfig:
    images = manifest.load(cfg.manifests)
    return RunConfig(**{**cfg.__dict__, "mode": CENSUS, "iters": cfg.repeat * len(images)})


def check_space(directory: Path) -> None:
    """A job whose logs hit a full disk was cut short by the disk, not by its image: raise
    ENOSPC rather than judge truncated logs."""
    if shutil.disk_usage(directory).free < MIN_FREE_BYTES:
        raise OSError(errno.ENOSPC, "No space left on device", str(directory))


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


def todo_iterations(recorded: list[records.Record], iters: int) -> list[int]:
    """Iterations still to run, given a mode's records: not recorded, or recorded with a
    reason outside the success rate (the infrastructure failed: redo it)."""
    done = {r.iteration for r in recorded if counts_in_rate(r.reason)}
    return [i for i in range(iters) if i not in done]


def _iterate(
    cfg: RunConfig, exp: Experiment, on_record: Callable[[records.Record], None] | None
) -> Counter:
    recorded = records.of_mode(cfg.outdir, cfg.mode)
    todo = todo_iterations(recorded, cfg.iters)
    redo = {r.iteration for r in recorded}
    counts: Counter = Counter()

    def save(rec: records.Record) -> None:
        if rec.iteration in redo:
            records.replace(cfg.outdir, rec)
        else:
            records.append(cfg.outdir, rec)
        counts[rec.reason] += 1
        if on_record:
            on_record(rec)

    if cfg.max_concurrent == 1:
        try:
            for i in todo:
                save(exp.iteration(i))
        except BaseException:
            exp.executor.cancel_all()
            raise
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
        exp.executor.cancel_all()
        raise
    pool.shutdown()
    return counts
