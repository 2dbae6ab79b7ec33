"""A run's settings (`harness run`'s options) and the checks they must pass before anything runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness import application, records
from harness.errors import HarnessError
from harness.select import modes


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
    census: Path | None = None  # a mode that chooses by speed: the census's outdir (else outdir)
    runtime_options: tuple[str, ...] = ()  # extra `apptainer exec` argv for every image
    launcher_options: tuple[str, ...] = ()  # extra MPI launcher argv
    application: str = application.DEFAULT  # a name (harness/data/applications/) or a file


def check_options(cfg: RunConfig) -> None:
    if cfg.repeat < 1:
        raise HarnessError("--repeat must be at least 1 (--repeats K: runs of each image)")
    if cfg.iters < 1:
        raise HarnessError("--iters must be at least 1")
    if cfg.np < 1:
        raise HarnessError("--np must be at least 1")
    if cfg.max_concurrent < 1:
        raise HarnessError("--max-concurrent must be at least 1")
    if cfg.seed is not None and not records.SEED_MIN <= cfg.seed <= records.SEED_MAX:
        raise HarnessError(
            f"--seed {cfg.seed} is out of range: a record holds a 64-bit signed integer "
            f"({records.SEED_MIN} to {records.SEED_MAX})"
        )
    if not cfg.timeout_s > 0 or cfg.timeout_s == float("inf"):  # also refuses nan
        raise HarnessError("--timeout must be a finite positive number of seconds")
    if not modes.NAME.match(cfg.mode):
        raise HarnessError(f"mode name {cfg.mode!r}: use letters, digits, '.', '_' and '-'")
