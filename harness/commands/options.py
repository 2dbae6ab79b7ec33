"""The arguments several commands share (launcher, matcher, MPI model, launch, outdir,
selection) and what they resolve to (the executor, its options, the selection inputs)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from harness.commands.output import say
from harness.errors import HarnessError

DEFAULT_LAUNCHER = os.environ.get("HARNESS_LAUNCHER", "mpirun")
# A deployment sets the outdir (and the manifest: select/manifest.py) once for every shell, as
# minicluster/persistent.yaml does, so that `harness run --mode MODE` is the whole command there.
DEFAULT_OUTDIR = os.environ.get("HARNESS_OUTDIR") or "results"


def launcher_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--launcher",
        default=DEFAULT_LAUNCHER,
        help="host MPI launcher: mpirun (Open MPI) or mpiexec.mpich "
        "(default: $HARNESS_LAUNCHER or mpirun)",
    )


def matcher_arg(p: argparse.ArgumentParser) -> None:
    from harness.select.matching import MATCHERS

    p.add_argument(
        "--matcher",
        choices=MATCHERS,
        default="native",
        help="native (compspec-go's matching plus normalisation) or the real `compspec match` "
        "(exact strings; needs compspec on PATH or $HARNESS_COMPSPEC)",
    )


def choose_executor(args) -> str | None:
    """Resolve --executor auto (flux inside a Flux instance, else local); the line that says
    which, shown once the input is checked (bad input stays one line)."""
    from harness.run.executors import AUTO, choose

    meant = {name for name, _, _ in given_options(args)}
    forced = meant.pop() if args.executor == AUTO and len(meant) == 1 else None
    if forced not in (None, "flux"):  # e.g. --slurm-partition: that executor is meant
        args.executor = forced
    name, line = choose(args.executor, getattr(args, "flux_uri", None))
    if forced == "flux" and name != "flux":  # Flux is meant: its preflight says why not
        name, line = "flux", None
    args.executor = name
    return f"harness: {line}" if line else None


def _describing_executors() -> list[str]:
    """auto, local, and the executors that describe the host as their jobs see it."""
    from harness.run.executors import AUTO, executor_class, names

    return [AUTO, "local", *(n for n in names() if executor_class(n).caps.describes_host)]


def view_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--executor",
        default="auto",
        choices=_describing_executors(),
        help=f"{what} as this executor's jobs see it (flux, slurm: the MPI implementations "
        "their PMI can start, harness/data/pmi.yaml); auto (default): flux inside a Flux "
        "instance, else local",
    )


def executor_view(args, desc: dict[str, str]) -> dict[str, str]:
    """This host as the chosen executor's jobs see it (the line saying which is printed)."""
    from harness.run.executors import choose, executor_class

    name, line = choose(args.executor, None)
    say(f"harness: {line}" if line else None)
    return desc if name == "local" else executor_class(name)().describe_host(desc)


def mpi_model_arg(p: argparse.ArgumentParser) -> None:
    from harness.select.manifest import MPI_MODELS

    p.add_argument(
        "--mpi-model",
        default=MPI_MODELS[0],
        choices=MPI_MODELS,
        help="bind (default): the host's MPI library is bound into the image, as a Flux view "
        "or a site MPI is on a cluster; hybrid: the image's own MPI, started by the host's "
        "launcher",
    )


def application_arg(p: argparse.ArgumentParser) -> None:
    """--application: what the images run and how its output is judged."""
    from harness import application

    p.add_argument(
        "--application",
        default=application.DEFAULT,
        metavar="NAME|FILE",
        help="what the images run and how it is judged: an application of "
        f"harness/data/applications/ ({', '.join(application.available())}; default "
        f"{application.DEFAULT}) or such a YAML file",
    )


def launch_args(p: argparse.ArgumentParser) -> None:
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
    application_arg(p)
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="show what each iteration would run (image, command or MiniCluster YAML) from the "
        "picks a real run makes; nothing is pulled, run or written",
    )
    mpi_model_arg(p)
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


def outdir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--outdir",
        default=DEFAULT_OUTDIR,
        help="where records and logs go (default: $HARNESS_OUTDIR, else results)",
    )


def _mode_help() -> str:
    from harness.select import modes

    known = "; ".join(f"{m.name}: {m.description}" for m in modes.builtin().values())
    return f"selection mode ({known}; more with --mode-file)"


def selection_args(p: argparse.ArgumentParser, mode: str | None = "required") -> None:
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
    launcher_arg(p)


def selection_inputs(args):
    """What every selection command reads once: images, host description, artifact store."""
    from harness.select import host, manifest
    from harness.select.artifacts import ArtifactStore

    images = manifest.load(args.manifests)
    desc = host.resolve(args.host_file, args.launcher)
    return images, desc, ArtifactStore(cache=args.cache, skip_invalid=args.skip_invalid)


def given_options(args) -> list[tuple[str, object, object]]:
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
    they name the executor meant (`choose_executor`)."""
    from harness.run.executors import AUTO

    given = given_options(args)
    meant = {name for name, _, _ in given}
    chosen = meant.pop() if args.executor == AUTO and len(meant) == 1 else args.executor
    mine = {}
    for name, o, value in given:
        if name != chosen:
            raise HarnessError(f"{o.flag} applies to --executor {name} only")
        mine[o.field] = value
    return mine
