"""The `harness` command line. Bad input ends in one line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from harness.errors import HarnessError, Terminated
from harness.usage import Parser

DEFAULT_LAUNCHER = os.environ.get("HARNESS_LAUNCHER", "mpirun")
# A deployment sets the outdir (and the manifest: select/manifest.py) once for every shell, as
# minicluster/persistent.yaml does, so that `harness run --mode MODE` is the whole command there.
DEFAULT_OUTDIR = os.environ.get("HARNESS_OUTDIR") or "results"
DEFAULT_ITERS = 30  # the reference experiment's runs per mode


def _launcher_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--launcher",
        default=DEFAULT_LAUNCHER,
        help="host MPI launcher: mpirun (Open MPI) or mpiexec.mpich "
        "(default: $HARNESS_LAUNCHER or mpirun)",
    )


def _matcher_arg(p: argparse.ArgumentParser) -> None:
    from harness.select.matching import MATCHERS

    p.add_argument(
        "--matcher",
        choices=MATCHERS,
        default="native",
        help="native (compspec-go's matching plus normalisation) or the real `compspec match` "
        "(exact strings; needs compspec on PATH or $HARNESS_COMPSPEC)",
    )


def _describing_executors() -> list[str]:
    """auto, local, and the executors that describe the host as their jobs see it."""
    from harness.run.executors import AUTO, executor_class, names

    return [AUTO, "local", *(n for n in names() if executor_class(n).caps.describes_host)]


def _choose_executor(args) -> str | None:
    """Resolve --executor auto (flux inside a Flux instance, else local); the line that says
    which, shown once the input is checked (bad input stays one line)."""
    from harness.run.executors import AUTO, choose

    meant = {name for name, _, _ in _given_options(args)}
    forced = meant.pop() if args.executor == AUTO and len(meant) == 1 else None
    if forced not in (None, "flux"):  # e.g. --slurm-partition: that executor is meant
        args.executor = forced
    name, line = choose(args.executor, getattr(args, "flux_uri", None))
    if forced == "flux" and name != "flux":  # Flux is meant: its preflight says why not
        name, line = "flux", None
    args.executor = name
    return f"harness: {line}" if line else None


def _say(line: str | None) -> None:
    if line:
        print(line, file=sys.stderr, flush=True)


def _mpi_model_arg(p: argparse.ArgumentParser) -> None:
    from harness.select.manifest import MPI_MODELS

    p.add_argument(
        "--mpi-model",
        default=MPI_MODELS[0],
        choices=MPI_MODELS,
        help="bind (default): the host's MPI library is bound into the image, as a Flux view "
        "or a site MPI is on a cluster; hybrid: the image's own MPI, started by the host's "
        "launcher",
    )


def _launch_args(p: argparse.ArgumentParser) -> None:
    """How each job is launched: shared by `run` and `census`, executors' own options too."""
    from harness.run.executors import AUTO, executor_class, names

    p.add_argument(
        "--executor",
        default=AUTO,
        choices=[AUTO, *names()],
        help="who runs the jobs; auto (default): flux inside a Flux instance (FLUX_URI, or a "
        "Flux Operator pod's /mnt/flux view), else local (the MPI launcher here)",
    )
    p.add_argument(
        "--np",
        type=int,
        help="MPI ranks (default 2; the minicluster reference protocol: 4, as the reference ran)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="show what each iteration would run (image, command or MiniCluster YAML) from the "
        "picks a real run makes; nothing is pulled, run or written",
    )
    _mpi_model_arg(p)
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per job (default 300)")
    p.add_argument("--sif-cache", type=Path, help="where pulled SIF images are kept")
    p.add_argument(
        "--max-concurrent", type=int, default=1, help="iterations in flight at once (default 1)"
    )
    p.add_argument(
        "--runtime-option",
        dest="runtime_options",
        action="append",
        default=[],
        metavar="ARG",
        help="one more argument of `apptainer exec` for every image, e.g. --runtime-option=--nv "
        "or --runtime-option=--bind --runtime-option=/site/lib:/site/lib (repeatable; added to "
        "the manifest's per-image runtime_options; --nv/--rocm are added by themselves for "
        "images whose artifact says they use a GPU when this machine has one)",
    )
    p.add_argument(
        "--launcher-option",
        dest="launcher_options",
        action="append",
        default=[],
        metavar="ARG",
        help="one more argument of the MPI launcher, e.g. --launcher-option=--oversubscribe "
        "(repeatable)",
    )
    for name in names():
        options = executor_class(name).OPTIONS
        if options:
            g = p.add_argument_group(f"{name} executor")
            for o in options:
                g.add_argument(o.flag, help=o.help, default=None, **o.kwargs)


def _outdir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--outdir",
        default=DEFAULT_OUTDIR,
        help="where records and logs go (default: $HARNESS_OUTDIR, else results)",
    )


def _mode_help() -> str:
    from harness.select import modes

    known = "; ".join(f"{m.name}: {m.description}" for m in modes.builtin().values())
    return f"selection mode ({known}; more with --mode-file)"


def _selection_args(p: argparse.ArgumentParser, mode: str | None = "required") -> None:
    """The selection inputs; `mode`: "required", "optional", or None (no --mode: a census)."""
    from harness.select.manifest import default_path

    p.add_argument(
        "--manifests",
        type=Path,
        default=default_path(),
        help="manifest (compspec-go format; default: $HARNESS_MANIFESTS, else manifests.yaml)",
    )
    if mode is not None:
        p.add_argument("--mode", required=mode == "required", help=_mode_help())
    p.add_argument("--mode-file", type=Path, help="YAML file defining more modes")
    p.add_argument("--host", dest="host_file", type=Path, help="host description (JSON/YAML)")
    p.add_argument("--cache", type=Path, help="compspec-go cache directory of artifacts")
    p.add_argument(
        "--skip-invalid",
        action="store_true",
        help="exclude images whose artifact is missing or invalid from the candidates "
        "(default: stop with an error)",
    )
    _launcher_arg(p)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("compat-harness")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="harness", description=__doc__)
    parser.add_argument("--version", action="version", version=f"harness {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("host", help="describe this machine in compspec attribute keys")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _launcher_arg(p)
    p.add_argument(
        "--executor",
        default="auto",
        choices=_describing_executors(),
        help="describe the host as this executor's jobs see it (flux, slurm: the MPI "
        "implementations their PMI can start, harness/data/pmi.yaml); auto (default): flux "
        "inside a Flux instance, else local",
    )

    p = sub.add_parser("candidates", help="images a mode allows for a host")
    _selection_args(p)
    _matcher_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("explain", help="every attribute compared, per image, and the verdict")
    _selection_args(p, mode="optional")
    p.add_argument(
        "--wide", action="store_true", help="full image names (default: tags, to fit 100 columns)"
    )

    p = sub.add_parser("predict", help="expected success rate of each mode, before running")
    _selection_args(p, mode="optional")
    p.add_argument(
        "--protocol",
        choices=["host", "reference"],
        default="host",
        help="host: this harness's modes on the host; reference: the Flux Operator "
        "protocol of rse-ops/lammps-matrix (Flux views mounted into images)",
    )
    _mpi_model_arg(p)
    p.add_argument("--iters", type=int, default=30, help="runs per mode to scale counts to")
    p.add_argument(
        "--measured",
        type=Path,
        nargs="*",
        default=[],
        help="harness outdirs or a published results csv to compare with",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("run", help="run N iterations of a mode and record each outcome")
    _selection_args(p)
    _matcher_arg(p)
    p.add_argument(
        "--iters",
        type=int,
        default=DEFAULT_ITERS,
        help=f"iterations of the mode to run (default {DEFAULT_ITERS})",
    )
    _outdir_arg(p)
    p.add_argument("--seed", type=int, help="seed of the picks (default: random, recorded)")
    p.add_argument(
        "--census",
        type=Path,
        metavar="OUTDIR",
        help="a mode that chooses by speed (descriptive-performance) reads the census of this "
        "outdir (default: the run's own --outdir)",
    )
    _launch_args(p)
    p.add_argument(
        "--detach",
        action="store_true",
        help="submit the harness itself as a Flux job and print its id (survives a lost shell)",
    )

    p = sub.add_parser(
        "census", help="run every image of a manifest K times: which of my images run here"
    )
    _selection_args(p, mode=None)
    _outdir_arg(p)
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
    _matcher_arg(p)
    _launch_args(p)

    p = sub.add_parser("status", help="progress of a run directory, from its records")
    p.add_argument("outdir", help="the run directory")

    # prepull, artifact create and lab * parse their own arguments (their --help included)
    p = sub.add_parser(
        "prepull", help="pull every image of a manifest on every Flux node", add_help=False
    )
    p.add_argument("rest", nargs=argparse.REMAINDER)

    p = sub.add_parser("classify", help="classify raw job logs")
    p.add_argument("paths", nargs="+", type=Path, help="log files or directories of them")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("report", help="tables, CSV, markdown and plots from run records")
    p.add_argument("outdirs", nargs="+", type=Path, help="run directories (harness run/census)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument(
        "--out",
        type=Path,
        help="where to write the report (default: the first outdir; a filtered report is "
        "written only where --out says)",
    )
    p.add_argument(
        "--compare",
        action="store_true",
        help="per-mode deltas of the other outdirs against the first, and whether the 95 %% "
        "intervals overlap",
    )
    p.add_argument(
        "--mode",
        dest="modes",
        action="append",
        help="only this mode (repeatable; shown in this order)",
    )
    p.add_argument("--image", dest="images", action="append", help="only this image (repeatable)")
    p.add_argument(
        "--reason", dest="reasons", action="append", help="only this reason (repeatable)"
    )
    p.add_argument(
        "--export-fom",
        type=Path,
        help="write the figures of merit of successful runs (with mode, image, reason, unit) "
        "to this CSV",
    )
    p.add_argument(
        "--export-fom-all",
        action="store_true",
        help="with --export-fom: every run's figures, failed and singleton runs too",
    )
    p.add_argument(
        "--mode-file", type=Path, help="YAML file of more modes (shown in the file's order)"
    )

    p = sub.add_parser("records", help="run records: check or repair an outdir's records.jsonl")
    rsub = p.add_subparsers(dest="records_command", required=True)
    r = rsub.add_parser(
        "check",
        help="validate records.jsonl line by line: the first bad line (exit 2), else the count",
    )
    r.add_argument("outdir", help="the run directory")
    r = rsub.add_parser(
        "repair",
        help="keep the first valid record per (mode, iteration); move the rest to "
        "records.rejected.jsonl",
    )
    r.add_argument("outdir", help="the run directory")

    p = sub.add_parser("artifact", help="compatibility artifacts")
    asub = p.add_subparsers(dest="artifact_command", required=True)
    a = asub.add_parser(
        "create",
        help="describe an image (SIF, docker://, oras://) as a CompatibilitySpec",
        add_help=False,
    )
    a.add_argument("rest", nargs=argparse.REMAINDER)
    a = asub.add_parser("push", help="push an artifact beside its image (<tag>-compspec)")
    a.add_argument("image", help="the image reference (registry/name:tag)")
    a.add_argument("artifact", type=Path, help="the CompatibilitySpec JSON file")
    a.add_argument("--to", help="another artifact reference (default: the image's tag-compspec)")

    p = sub.add_parser("manifest", help="compspec-go manifests")
    msub = p.add_subparsers(dest="manifest_command", required=True)
    m = msub.add_parser("init", help="a manifest pairing images with their artifacts")
    m.add_argument("images", nargs="+", help="image references or local SIF files")
    m.add_argument("-o", "--out", type=Path, required=True, help="the manifest to write")
    m.add_argument(
        "--command",
        dest="image_command",
        action="append",
        metavar="ARG",
        help="one argument of what to run in each image, in order, e.g. --command=lmp "
        "--command=-in --command=in.lj (default: lmp -in in.lj)",
    )
    m.add_argument("--workdir", help="where to run it inside the image")

    p = sub.add_parser("lab", help="the lab: image matrix, registry, artifacts")
    lsub = p.add_subparsers(dest="lab_command", required=True)
    for name in ("build", "publish", "verify"):
        a = lsub.add_parser(name, add_help=False)
        a.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def cmd_host(args) -> int:
    from harness.select import host

    chosen = _choose_executor(args)
    desc = host.detect(args.launcher)
    if args.executor == "local" and host.MPI_IMPL not in desc:
        print(
            f"harness: warning: no MPI launcher {args.launcher!r} on PATH: the MPI keys are "
            "left out (give --launcher, or describe another machine in a host file)",
            file=sys.stderr,
        )
    if args.executor != "local":
        from harness.run.executors import executor_class

        desc = executor_class(args.executor)().describe_host(desc)
    _say(chosen)
    if args.json:
        print(host.to_json(desc))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table("attribute", "value", title="this host")
        for key, value in sorted(desc.items()):
            table.add_row(key, value)
        Console().print(table)
    return 0


def _selection_inputs(args):
    """What every selection command reads once: images, host description, artifact store."""
    from harness.select import host, manifest
    from harness.select.artifacts import ArtifactStore

    images = manifest.load(args.manifests)
    desc = host.resolve(args.host_file, args.launcher)
    return images, desc, ArtifactStore(cache=args.cache, skip_invalid=args.skip_invalid)


def warn_skipped(skipped: dict[str, str]) -> None:
    for why in skipped.values():
        print(f"harness: warning: skipped: {why}", file=sys.stderr)


def cmd_candidates(args) -> int:
    from harness.select import matching, modes

    images, desc, store = _selection_inputs(args)
    mode = modes.resolve(args.mode, args.mode_file)
    verdicts = matching.select(args.matcher, args.manifests, images, mode, desc, store)
    warn_skipped(store.skipped)
    allowed = [v.image.name for v in verdicts]
    if args.json:
        print(json.dumps(allowed, indent=2))
    else:
        print("\n".join(allowed))
    return 0


def cmd_explain(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from harness.select import matching, modes

    # Rich assumes 80 columns when output is not a terminal: too narrow for attribute keys.
    console = Console(width=None if sys.stdout.isatty() else (200 if args.wide else 100))
    shown = (lambda name: name) if args.wide else short_name
    # without --wide, a key by its last two parts (os.version, gpu.available, ...)
    key = (lambda k: k) if args.wide else (lambda k: ".".join(k.split(".")[-2:]))
    names = [args.mode] if args.mode else list(modes.load(args.mode_file))
    images, desc, store = _selection_inputs(args)
    for name in names:
        mode = modes.resolve(name, args.mode_file)
        missing = [k for k in mode.keys if k not in desc]
        if missing and not args.mode:  # every mode: say why this one cannot be compared
            console.print(f"mode {mode.name}: the host description lacks {', '.join(missing)}")
            continue
        verdicts = matching.judge(images, mode, desc, store)
        table = Table(title=f"mode {mode.name}: {mode.description}")
        table.add_column("image", no_wrap=True)
        table.add_column("attribute", no_wrap=True)
        for col in ("host", "image value", ""):
            table.add_column(col)
        table.add_column("verdict", overflow="fold")  # every failing attribute, wrapped
        for v in verdicts:
            if not v.checks:
                table.add_row(shown(v.image.name), "-", "-", "-", "", "[green]in[/] (no filter)")
            for j, c in enumerate(v.checks):
                mark = "[green]pass[/]" if c.ok else "[red]fail[/]"
                verdict = ""
                if j == 0:
                    differs = ", ".join(key(f.key) for f in v.failed)
                    verdict = "[green]in[/]" if v.ok else f"[red]out[/]: {differs}"
                table.add_row(
                    shown(v.image.name) if j == 0 else "",
                    key(c.key),
                    c.host,
                    c.image if c.image is not None else "(absent)",
                    mark,
                    verdict,
                )
            table.add_section()
        console.print(table)
        allowed = sum(v.ok for v in verdicts)
        if allowed:
            console.print(f"mode {mode.name}: {allowed} of {len(verdicts)} images are candidates")
        else:
            console.print(matching.why_empty(mode, verdicts))
    from harness.run.runner import gpu_flags
    from harness.select.host import gpu_runtime_flags

    for image, added in gpu_flags(images, store, gpu_runtime_flags()).items():
        console.print(
            f"launch adds {' '.join(added)} to {shown(image)} (a GPU image on a GPU host)"
        )
    warn_skipped(store.skipped)
    return 0


def cmd_predict(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from harness.select import modes, predict

    images, desc, store = _selection_inputs(args)
    known = modes.load(args.mode_file)
    chosen = {args.mode: modes.resolve(args.mode, args.mode_file)} if args.mode else known
    if args.protocol == "reference":
        preds = predict.reference(images, store, desc, chosen)
    else:
        preds = predict.on_host(images, store, desc, chosen, args.mpi_model)
    warn_skipped(store.skipped)
    seen = predict.measured(args.measured)
    n = args.iters
    if args.json:
        print(
            json.dumps(
                {
                    p.mode: {
                        "success_rate": round(p.success, 4),
                        "expected": {r: round(v * n, 2) for r, v in sorted(p.outcomes.items())},
                        "rules": {
                            r: {w: round(v, 4) for w, v in c.items()} for r, c in p.why.items()
                        },
                        "measured": dict(seen.get(p.mode, {})),
                    }
                    for p in preds
                },
                indent=2,
            )
        )
        return 0
    console = Console(width=None if sys.stdout.isatty() else 160)
    table = Table(
        "mode",
        "predicted success",
        f"expected of {n}",
        "measured",
        "predicted failures (rule: share)",
        title=f"prediction ({args.protocol})",
    )
    for p in preds:
        got = seen.get(p.mode)
        got_s = f"{got['success']}/{sum(got.values())}" if got else "-"
        rules = "; ".join(
            f"{r}: {v:.0%}" for r, v in sorted(p.outcomes.items()) if r != "success" and v > 0
        )
        table.add_row(p.mode, f"{p.success:.0%}", f"{p.success * n:.1f}", got_s, rules)
    console.print(table)
    for p in preds:
        for reason, whys in p.why.items():
            for why, share in whys.most_common():
                console.print(f"  {p.mode}: {reason} {share:.0%}: {why}")
    return 0


def _given_options(args) -> list[tuple[str, object, object]]:
    """(executor, option, value) of every executor option given on the command line."""
    from harness.run.executors import executor_class, names

    return [
        (name, o, getattr(args, o.dest))
        for name in names()
        for o in executor_class(name).OPTIONS
        if getattr(args, o.dest, None) is not None
    ]


def executor_options(args) -> dict:
    """The chosen executor's own settings from the command line (its OPTIONS); an option of
    another executor is an error. With --executor auto, the options of one executor are fine:
    they name the executor meant (`_choose_executor`)."""
    from harness.run.executors import AUTO

    given = _given_options(args)
    meant = {name for name, _, _ in given}
    chosen = meant.pop() if args.executor == AUTO and len(meant) == 1 else args.executor
    mine = {}
    for name, o, value in given:
        if name != chosen:
            raise HarnessError(f"{o.flag} applies to --executor {name} only")
        mine[o.field] = value
    return mine


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
    )


def cmd_run(args) -> int:
    from harness.run import runner

    chosen = _choose_executor(args)
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


def cmd_census(args) -> int:
    from harness.run import runner

    chosen = _choose_executor(args)
    cfg = runner.census_config(_run_config(args, runner.CENSUS, 1))
    if args.dry_run:
        return _preview(runner.prepare(cfg, dry_run=True), chosen)
    _execute(runner.prepare(cfg), chosen)
    return 0


def _preview(exp, chosen: str | None) -> int:
    """A dry run's output: per iteration a comment naming it, then what it would run (a shell
    command line, or a YAML document for a MiniCluster)."""
    from harness.run import runner

    _say(chosen)
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

    _say(chosen)
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


def short_name(image: str) -> str:
    """An image's tag (or file name): what tells images of one repository apart."""
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else last


def _summary(cfg, counts) -> None:
    n = sum(counts.values())
    ok = counts.get("success", 0)
    failures = ", ".join(f"{k} {v}" for k, v in counts.most_common() if k != "success")
    print(
        f"{cfg.mode}: {ok}/{n} ran{'; ' + failures if failures else ''}. "
        f"Report: harness report {cfg.outdir}",
        file=sys.stderr,
    )


def cmd_status(args) -> int:
    from harness.outdir import outdir_path
    from harness.run.status import status

    print(status(outdir_path(args.outdir)))
    return 0


def cmd_prepull(args) -> int:
    from harness.run import prepull

    return prepull.main(args.rest)


def cmd_classify(args) -> int:
    from harness.judge.classify import classify_file

    files: list[Path] = []
    for path in args.paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix in (".log", ".out"))
        elif path.is_file():
            files.append(path)
        else:
            raise HarnessError(f"{path}: no such file or directory")
    # A job's stdout (X.out) is read with its stderr (X.err), as `harness run` classifies it.
    results = [
        (f, classify_file(f, f.with_suffix(".err") if f.suffix == ".out" else None)) for f in files
    ]
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "path": str(f),
                        "reason": c.reason,
                        "evidence": c.evidence,
                        "source": c.source,
                        "note": c.note,
                    }
                    for f, c in results
                ],
                indent=2,
            )
        )
    else:
        for f, c in results:
            print(f"{f}\t{c.reason}\t{c.evidence}")
    return 0


def cmd_report(args) -> int:
    from harness import report

    return report.main(
        [str(d) for d in args.outdirs],
        args.json,
        str(args.out) if args.out else None,
        compare=args.compare,
        modes=args.modes,
        images=args.images,
        reasons=args.reasons,
        export_fom=args.export_fom,
        export_fom_all=args.export_fom_all,
        mode_file=args.mode_file,
    )


def cmd_records(args) -> int:
    from harness import records
    from harness.outdir import outdir_path
    from harness.record_index import check

    outdir = outdir_path(args.outdir)
    if args.records_command == "check":
        n, modes = check(outdir)
        print(f"{records.records_path(outdir)}: {n} records, {modes} modes, ok")
        return 0
    kept, rejected = records.repair_all(outdir)
    print(f"{outdir}: kept {kept} records, moved {rejected} to {records.REJECTED_FILE}")
    return 0


def cmd_artifact(args) -> int:
    if args.artifact_command == "push":
        from harness.select.artifact_push import push

        print(push(args.image, args.artifact, args.to))
        return 0
    from harness.run.runtime import local_sif
    from harness.select import artifact_create

    return artifact_create.main(args.rest, fetch=local_sif)


def cmd_manifest(args) -> int:
    from harness.select.manifest_init import write

    write(args.images, args.out, args.image_command, args.workdir)
    print(f"wrote {args.out} ({len(args.images)} images)")
    return 0


def cmd_lab(args) -> int:
    if args.lab_command == "build":
        from harness.lab import build

        return build.main(args.rest)
    from harness.lab import publish

    return (publish.verify_main if args.lab_command == "verify" else publish.main)(args.rest)


COMMANDS = {
    "host": cmd_host,
    "predict": cmd_predict,
    "status": cmd_status,
    "prepull": cmd_prepull,
    "candidates": cmd_candidates,
    "explain": cmd_explain,
    "run": cmd_run,
    "census": cmd_census,
    "classify": cmd_classify,
    "report": cmd_report,
    "records": cmd_records,
    "artifact": cmd_artifact,
    "manifest": cmd_manifest,
    "lab": cmd_lab,
}


def _terminate(signum, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "rest"):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.rest = extra + args.rest  # options before the first positional, e.g. --help
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return COMMANDS[args.command](args)
    except Terminated:
        print("harness: terminated; jobs in flight were stopped; rerun to resume", file=sys.stderr)
        return 143
    except HarnessError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `harness ... | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("harness: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
