"""`harness run` and `harness census`: a prepared experiment, previewed (--dry-run) or
executed with a progress bar or one line per iteration."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from harness.commands.options import (
    choose_executor,
    executor_options,
    launch_args,
    matcher_arg,
    outdir_arg,
    selection_args,
)
from harness.commands.output import say, short_name, warn_skipped
from harness.errors import HarnessError

DEFAULT_ITERS = 30  # the reference experiment's runs per mode


def _add_run(sub) -> None:
    p = sub.add_parser("run", help="run N iterations of a mode and record each outcome")
    selection_args(p)
    matcher_arg(p)
    p.add_argument(
        "--iters",
        type=int,
        default=DEFAULT_ITERS,
        help=f"iterations of the mode to run (default {DEFAULT_ITERS})",
    )
    outdir_arg(p)
    p.add_argument("--seed", type=int, help="seed of the picks (default: random, recorded)")
    p.add_argument(
        "--census",
        type=Path,
        metavar="OUTDIR",
        help="a mode that chooses by speed (descriptive-performance) reads the census of this "
        "outdir (default: the run's own --outdir)",
    )
    launch_args(p)
    p.add_argument(
        "--detach",
        action="store_true",
        help="submit the harness itself as a Flux job and print its id (survives a lost shell)",
    )
    p.set_defaults(main=main)


def _add_census(sub) -> None:
    p = sub.add_parser(
        "census", help="run every image of a manifest K times: which of my images run here"
    )
    selection_args(p, mode=None)
    outdir_arg(p)
    p.add_argument(
        "--repeats",
        "--repeat",
        dest="repeat",
        type=int,
        default=1,
        metavar="K",
        help="runs of each image, interleaved in a seeded order (default 1); K >= 3 gives each "
        "image's median and its interval",
    )
    p.add_argument("--seed", type=int, help="seed of the image order (default: random)")
    matcher_arg(p)
    launch_args(p)
    p.set_defaults(main=census)


def add_parser(sub) -> None:
    _add_run(sub)
    _add_census(sub)


def _ranks(args) -> int:
    """--np, else the default of the executor's protocol (the reference ran 4 tasks)."""
    if args.np is not None:
        return args.np
    if args.executor == "minicluster" and args.protocol == "reference":
        from harness.run.executors.minicluster_render import REFERENCE_TASKS

        return REFERENCE_TASKS
    return 2


def _run_config(args, mode: str, iters: int):
    from harness.outdir import outdir_path
    from harness.run import runner

    return runner.RunConfig(
        manifests=args.manifests,
        mode=mode,
        iters=iters,
        outdir=outdir_path(args.outdir),
        seed=args.seed,
        executor=args.executor,
        launcher=args.launcher,
        np=_ranks(args),
        mpi_model=args.mpi_model,
        timeout_s=args.timeout,
        host_file=args.host_file,
        cache=args.cache,
        mode_file=args.mode_file,
        sif_cache=args.sif_cache,
        max_concurrent=args.max_concurrent,
        skip_invalid=args.skip_invalid,
        matcher=args.matcher,
        executor_options=executor_options(args),
        repeat=getattr(args, "repeat", 1),
        census=getattr(args, "census", None),
        runtime_options=tuple(args.runtime_options),
        launcher_options=tuple(args.launcher_options),
        application=args.application,
    )


def main(args) -> int:
    from harness.run import runner

    chosen = choose_executor(args)
    cfg = _run_config(args, args.mode, args.iters)
    if args.dry_run:
        return _preview(runner.prepare(cfg, dry_run=True), chosen)
    if args.detach:
        if args.executor != "flux":
            raise HarnessError("--detach needs --executor flux (the harness runs as a Flux job)")
        from harness.run.executors.flux import FluxExecutor
        from harness.run.executors.flux_detach import detach

        per_task = cfg.executor_options.get("cores_per_task", FluxExecutor.cores_per_task)
        jobid = detach(
            sys.argv[1:],
            cfg.outdir,
            args.mode,
            args.iters,
            uri=cfg.executor_options.get("uri"),
            job_cores=cfg.np * per_task,
        )
        print(
            f"harness run submitted as Flux job {jobid}; follow it with: harness status "
            f"{cfg.outdir}\n{jobid}"
        )
        return 0
    _execute(runner.prepare(cfg), chosen)
    return 0


def census(args) -> int:
    from harness.run import runner

    chosen = choose_executor(args)
    cfg = runner.census_config(_run_config(args, runner.CENSUS, 1))
    if args.dry_run:
        return _preview(runner.prepare(cfg, dry_run=True), chosen)
    _execute(runner.prepare(cfg), chosen)
    return 0


def _preview(exp, chosen: str | None) -> int:
    """A dry run's output: per iteration a comment naming it, then what it would run (a shell
    command line, or a YAML document for a MiniCluster)."""
    from harness.run import runner

    say(chosen)
    warn_skipped(exp.skipped)
    for text in runner.preview(exp):
        head, body = text.split("\n", 1)
        print(f"# {head}\n{body}", flush=True)
    return 0


def _execute(exp, chosen: str | None = None) -> None:
    """Run a prepared experiment (every input already checked: nothing is drawn before an
    argument error) with a progress bar over all of its mode's iterations, the recorded ones
    included; one line per iteration when stdout is not a terminal."""
    from collections import Counter

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from harness.judge.reasons import counts_in_rate
    from harness.run import runner

    say(chosen)
    warn_skipped(exp.skipped)
    if exp.chosen_by:
        print(f"harness: {exp.chosen_by}", file=sys.stderr)
    cfg = exp.cfg
    recorded = exp.index.mode(cfg.mode).counts(below=cfg.iters)
    # an infra record is redone: not counted as done
    counts = Counter({k: n for k, n in recorded.items() if counts_in_rate(k)})
    if not sys.stdout.isatty():
        eta = _Eta(cfg.iters - sum(counts.values()))

        def line(rec) -> None:
            counts[rec.reason] += 1
            print(
                f"{cfg.mode} {rec.iteration + 1}/{cfg.iters} {eta.tick()} {rec.image} "
                f"{rec.reason}: {rec.evidence}",
                flush=True,
            )

        runner.execute(exp, on_record=line)
        _summary(cfg, counts)
        return
    with Progress(
        TextColumn(f"[bold]{cfg.mode}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[counts]}"),
        TextColumn("[dim]{task.fields[now]}"),
        transient=False,
    ) as progress:
        task = progress.add_task("run", total=cfg.iters, counts="", now="")
        words = {"acquire": "pulling", "launch": "running", "judge": "judging"}

        def on_step(i: int, image: str, step: str) -> None:
            if step in words:
                progress.update(task, now=f"{i}: {short_name(image)} {words[step]}")

        def on_record(rec) -> None:
            counts[rec.reason] += 1
            shown = " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
            progress.update(task, advance=1, counts=shown)

        progress.update(task, completed=sum(counts.values()))
        exp.on_step = on_step
        runner.execute(exp, on_record=on_record)
        progress.update(task, now="")
    _summary(cfg, counts)


class _Eta:
    """The time left of a run, from the mean time of its iterations so far in this process."""

    def __init__(self, todo: int) -> None:
        self.todo, self.done, self.start = todo, 0, time.monotonic()

    def tick(self) -> str:
        self.done += 1
        left = max(0, self.todo - self.done) * (time.monotonic() - self.start) / self.done
        minutes, seconds = divmod(round(left), 60)
        return f"(eta {minutes // 60}:{minutes % 60:02d}:{seconds:02d})"


def _summary(cfg, counts) -> None:
    from harness.judge.reasons import SUCCESS
    from harness.records import CENSUS

    n = sum(counts.values())
    ok = counts.get(SUCCESS, 0)
    failures = ", ".join(f"{k} {v}" for k, v in counts.most_common() if k != SUCCESS)
    print(
        f"{cfg.mode}: {ok}/{n} ran{'; ' + failures if failures else ''}. "
        f"Report: harness report {cfg.outdir}",
        file=sys.stderr,
    )
    if cfg.mode == CENSUS:
        _speeds(cfg.outdir)


def _speeds(outdir: Path) -> None:
    """A census's answer to "which of my images is fastest here, and how sure are we": the
    images that ran, fastest median time-to-solution first, each with its distribution-free
    interval and whether the next image is slower for sure (the shift of its times against this
    image's, clear of zero: by how much, with its interval)."""
    from harness.select import performance

    census = performance.read_census(outdir)
    if census is None or not census.speeds:
        return
    ranked = performance.fastest_first(census.speeds, census.values)
    width = max(len(short_name(r.name)) for r in ranked)
    print("census: time-to-solution per image that ran, fastest first", file=sys.stderr)
    for r in ranked:
        s = r.spread
        line = f"{short_name(r.name):<{width}}  {s.median:6.2f} s"
        if s.n < 2:  # one run: a time, no interval
            print(f"  {line}  n=1", file=sys.stderr)
            continue
        line += f" [{s.low:.2f}–{s.high:.2f}]{_covers(s.coverage)}  n={s.n}"
        shift = r.to_next
        if shift is not None and r.clear_of_next:
            line += f"  faster than the next by {shift.estimate:.2f} s"
            line += f" [{shift.low:.2f}–{shift.high:.2f}]{_covers(shift.coverage)}"
        elif shift is not None:
            line += "  not told apart from the next"
        print(f"  {line}", file=sys.stderr)


def _covers(coverage: float) -> str:
    """What an interval covers, said only where it is below 95 % (too few runs)."""
    return "" if coverage >= 0.95 else f" (covers {coverage:.0%})"
