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
import random
import secrets
import shutil
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from harness import application, records
from harness.errors import HarnessError
from harness.judge.classify import classify
from harness.judge.faults import Fault
from harness.judge.reasons import rules_for as judge_rules_for
from harness.outdir import Outdir
from harness.reason_names import MPI, OS_ABI, SUCCESS, UNKNOWN
from harness.record_index import RecordIndex
from harness.run.candidates import candidate_sets, census_body, gpu_flags, rank_candidates
from harness.run.config import RunConfig, check_options
from harness.run.executors import Executor, Job, JobResult, create
from harness.run.loadcheck import loader_failure
from harness.run.runtime import ImageCache, Pulled
from harness.select import host as hostmod
from harness.select import manifest, matching, modes
from harness.select.artifacts import ArtifactStore

CENSUS = records.CENSUS
STEPS = ("pick", "acquire", "launch", "judge")
# Reasons that may be the symptom of a bound library that does not load in the image (an MPI
# or PMI that fails to initialise, or a failure no rule names); not e.g. mpi-singleton, where
# the image's MPI never loads the bound library at all.
SYMPTOMS = (MPI, UNKNOWN)
MIN_FREE_BYTES = 64 * 1024  # below this the job's logs may have been cut short by the disk
REDO_FLUSH_S = 60.0  # redone records wait at most this long for their rewrite of records.jsonl
T = TypeVar("T")


def pick(candidates: list[str], seed: int, mode: str, iteration: int) -> str:
    return random.Random(f"{seed}:{mode}:{iteration}").choice(candidates)


def census_order(names: list[str], seed: int, pass_: int = 0) -> list[str]:
    """The images of one pass of the census (iterations pass_*n .. pass_*n + n-1): a seeded
    shuffle of its own per pass, so that with --repeats K the runs of every image are
    interleaved and neither the manifest's order nor a slow drift of the machine lines up with
    one image; each pass runs every image once."""
    order = list(names)
    random.Random(f"{seed}:{CENSUS}" + (f":{pass_}" if pass_ else "")).shuffle(order)
    return order


# What a resumed run must share with the records already in the outdir for the same mode:
# otherwise two different experiments would be mixed under one name.
RESUME_FIELDS = ("application", "executor", "launcher", "mpi_model", "np", "matcher", "candidates")


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
    out: Outdir
    index: RecordIndex  # what the outdir has recorded: the todo list of a resumed run
    app: application.Application = field(default_factory=application.load)
    census: dict | None = None  # census.json of a census, written once the census holds its lock
    gpu_flags: dict[str, list[str]] = field(default_factory=dict)  # image -> e.g. ["--nv"]
    # called as (iteration, image, step) when a step starts: what a progress display shows
    on_step: Callable[[int, str, str], None] | None = None
    # a mode that chooses (modes.Choice): its candidates best first, and why in that order
    ranking: list[str] | None = None
    chosen_by: str | None = None

    def choose(self, i: int) -> matching.Verdict:
        names = [v.image.name for v in self.allowed]
        if self.ranking:
            return self.allowed[names.index(self.ranking[0])]
        if self.cfg.mode == CENSUS:
            name = census_order(names, self.seed, i // len(names))[i % len(names)]
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
            image.command or self.app.command,
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
        stdout, stderr = self.out.attempt_paths(self.cfg.mode, i, create=False)
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
        stdout, stderr = self.out.attempt_paths(cfg.mode, i)
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
                app=self.app,
            ),
        )
        if verdict.reason in SYMPTOMS and result is not None and result.binds and fault is None:
            verdict = step("judge", lambda: cause_of(verdict, result, pulled.path))
        figures = {}
        if result:  # the streams the application prints its figures on
            figures = self.app.parse_figures(out if self.app.streams == ("stdout",) else text)
        return records.Record(
            iteration=i,
            mode=cfg.mode,
            application=self.app.name,
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
            timings=self.timings(step, pulled, result, figures, wrapper_start),
            stdout_path=str(stdout),
            stderr_path=str(stderr),
            figures=figures,
            reason=verdict.reason,
            evidence=verdict.evidence,
            source=verdict.source,
            note=verdict.note,
            fault=fault.to_dict() if fault else None,
            started_at=started_at,
            events=result.events if result else [],
            steps=step.seconds,
            stage=None if verdict.reason == SUCCESS else stage,
        )

    def timings(self, step, pulled: Pulled, result: JobResult | None, figures, start: float):
        """The iteration's seconds: the harness's steps, the job's, and the application's own
        share of the job as its figures say (harness/data/applications/*.yaml `timings`)."""
        run_s = round(result.run_s, 6) if result else 0.0
        app_s, overhead_s = self.app.timings(figures, run_s) if result else (None, None)
        return records.Timings(
            select_s=round(self.select_s + step.seconds["pick"], 6),
            pull_s=round(pulled.seconds, 6),
            queue_s=round(result.queue_s, 6) if result else 0.0,
            run_s=run_s,
            wrapper_s=round(time.perf_counter() - start, 6),
            app_s=app_s,
            overhead_s=overhead_s,
        )


def cause_of(verdict, result: JobResult, sif: Path):
    """A failed job with host files bound in: when the image's loader cannot load one of them,
    that is the cause (os-abi, the loader's line as evidence) and the job's own line the
    symptom, kept in the note."""
    line = loader_failure(result.runtime or "apptainer", sif, result.binds)
    if line is None:
        return verdict
    symptom = f"symptom ({verdict.reason}): {verdict.evidence}"
    return replace(verdict, reason=OS_ABI, evidence=line, note=symptom, source="application")


def _select(cfg: RunConfig, images, host, store) -> tuple[list[matching.Verdict], float]:
    t0 = time.perf_counter()
    if cfg.mode == CENSUS:  # every image, whatever its artifact says
        allowed = [matching.Verdict(image, (), None) for image in images]
    else:
        mode = modes.resolve(cfg.mode, cfg.mode_file)
        allowed = matching.select(cfg.matcher, cfg.manifests, images, mode, host, store)
    return allowed, time.perf_counter() - t0


def check_application(cfg: RunConfig) -> application.Application:
    """The application to run (--application), its own rules checked, and the ranks it needs."""
    app = application.load(cfg.application)
    judge_rules_for(app)  # a rule naming no known reason: refused before anything runs
    if app.ranks is not None and cfg.np != app.ranks:
        raise HarnessError(
            f"application {app.name} runs on exactly {app.ranks} ranks: use --np {app.ranks}"
        )
    return app


def prepare(cfg: RunConfig, dry_run: bool = False) -> Experiment:
    """Check the input and the tools, select the candidates: everything before iteration 0.
    A dry run writes nothing (no outdir, no census.json)."""
    check_options(cfg)
    app = check_application(cfg)
    images = manifest.load(cfg.manifests)
    if cfg.mode != CENSUS:
        modes.resolve(cfg.mode, cfg.mode_file)
    executor = create(cfg.executor, cfg.launcher, cfg.executor_options)
    if not dry_run:  # a preview asks for what it shows (e.g. a MiniCluster needs no cluster)
        executor.preflight()
        slots = executor.slots() if executor.caps.counts_slots else None
        if slots is not None and cfg.np > slots:
            raise HarnessError(
                f"--np {cfg.np}: the {executor.name} executor has {slots} slots here, so no "
                "image could run (lower --np)"
            )
    host = hostmod.resolve(cfg.host_file, cfg.launcher)
    if cfg.host_file is None and executor.caps.describes_host:  # e.g. Slurm's MPI set
        host = executor.describe_host(host)
    store = ArtifactStore(cache=cfg.cache, skip_invalid=cfg.skip_invalid)
    allowed, select_s = _select(cfg, images, host, store)
    cache = ImageCache(cfg.sif_cache)
    if not executor.caps.pulls_image and not dry_run:  # a preview pulls nothing
        cache.check_registries([v.image.name for v in allowed])
    census_sets = candidate_sets(cfg, images, host, store) if cfg.mode == CENSUS else None
    out = Outdir(cfg.outdir)
    index = RecordIndex.load(out)  # a dry run writes nothing, not even the index
    if not dry_run:
        out.prepare()  # only now: bad input above leaves nothing behind
    before = index.mode(cfg.mode).first_record()
    # the model that record's image would get now (an image may set its own)
    image_model = {v.image.name: v.image.mpi_model for v in allowed}.get(
        before.image if before else None
    )
    now = {
        "seed": cfg.seed,
        "application": app.name,
        "executor": executor.name,
        "launcher": executor.launcher,
        "mpi_model": image_model or cfg.mpi_model,
        "np": cfg.np,
        "matcher": cfg.matcher,
        "candidates": [v.image.name for v in allowed],
    }
    seed = check_resume(cfg, before, now)
    exp = Experiment(
        cfg,
        host,
        allowed,
        select_s,
        seed,
        executor,
        cache,
        store.skipped,
        out=out,
        index=index,
        app=app,
    )
    if census_sets is not None:
        exp.census = census_body(cfg, host, census_sets, [v.image.name for v in allowed], seed)
    exp.gpu_flags = gpu_flags([v.image for v in allowed], store, hostmod.gpu_runtime_flags())
    if cfg.mode != CENSUS and (mode := modes.resolve(cfg.mode, cfg.mode_file)).choose:
        run = {"executor": executor.name, "launcher": executor.launcher, "np": cfg.np}
        run["mpi_model"] = cfg.mpi_model
        exp.ranking, exp.chosen_by = rank_candidates(cfg, mode, host, allowed, store, run)
    return exp


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
    """The iterations of a prepared experiment, under the mode's lock (a census writes
    census.json only once it holds it: a refused census changes nothing).

    With max_concurrent K > 1, up to K iterations are in flight at once (the executor, e.g.
    Flux, places them); records are still appended one per iteration in iteration order. A full
    disk anywhere in an iteration stops the run with one line, writing no record for it.
    """
    cfg, out = exp.cfg, exp.out
    try:
        with out.mode_lock(cfg.mode):
            if exp.census is not None:
                out.write_census(exp.census)
            counts = _iterate(exp, on_record)
            exp.index.refresh(out, save=True)  # the next resume reads only what follows
            return counts
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        where = exc.filename or cfg.outdir
        raise HarnessError(f"no space left on {where}: free space and rerun to resume") from None


def preview(exp: Experiment) -> Iterator[str]:
    """A dry run: what each iteration still to run would run, from the picks a real run makes."""
    for i in exp.index.mode(exp.cfg.mode).todo(exp.cfg.iters):
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


def _iterate(exp: Experiment, on_record: Callable[[records.Record], None] | None) -> Counter:
    """The iterations still to do, recorded in iteration order. Call under the mode's lock:
    the index, refreshed here, is then exact for this mode until the run ends.

    A redone infra iteration replaces its record in a rewrite of records.jsonl: they wait and
    go together (before the next new record, after REDO_FLUSH_S, at the end, on an interrupt),
    so redoing many costs a few rewrites, not one each. Killed before, they are redone again.
    """
    cfg, out = exp.cfg, exp.out
    exp.index.refresh(out, save=True)
    mine = exp.index.mode(cfg.mode)
    todo = mine.todo(cfg.iters)
    counts: Counter = Counter()
    redone: list[records.Record] = []
    since = time.monotonic()

    def flush() -> None:
        nonlocal since
        if redone:
            records.replace(out, *redone)
            redone.clear()
        since = time.monotonic()

    def save(rec: records.Record) -> None:
        if mine.recorded(rec.iteration):  # an infra record, redone
            redone.append(rec)
            if time.monotonic() - since > REDO_FLUSH_S:
                flush()
        else:
            flush()
            records.append(out, rec)
        counts[rec.reason] += 1
        if on_record:
            on_record(rec)

    try:
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
            for rec in _in_order(pool, exp.iteration, todo, window=2 * cfg.max_concurrent):
                save(rec)
        except BaseException:
            # Interrupted: drop what has not started, stop what runs (its iteration is redone
            # on resume: nothing of it was recorded).
            pool.shutdown(wait=False, cancel_futures=True)
            exp.executor.cancel_all()
            raise
        pool.shutdown()
        return counts
    finally:
        flush()


def _in_order(
    pool: ThreadPoolExecutor, work: Callable[[int], T], items: Iterable[int], window: int
) -> Iterator[T]:
    """work(item) for each item on the pool, yielded in the items' order, with at most `window`
    submitted ahead: a finished later item waits for earlier ones, and a huge todo list is
    never submitted (nor built) at once."""
    pending: deque[Future[T]] = deque()
    for item in items:
        pending.append(pool.submit(work, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()
