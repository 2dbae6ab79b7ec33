"""What every executor takes and gives back, and how it declares its options and abilities."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from harness.judge.faults import Fault


@dataclass(frozen=True)
class Job:
    sif: Path
    command: tuple[str, ...]
    np: int
    workdir: str | None
    mpi_model: str  # hybrid: the image's own MPI; bind: the host's MPI libraries bound in
    timeout_s: float
    stdout: Path
    stderr: Path
    image: str | None = None  # the image's name (a cluster executor pulls it itself)
    flux: Mapping[str, Any] | None = None  # the manifest's per-image Flux settings
    runtime_options: tuple[str, ...] = ()  # extra argv of `apptainer exec` (--nv, --bind ...)
    launcher_options: tuple[str, ...] = ()  # extra argv of the MPI launcher
    mode: str | None = None  # the selection mode it was picked under (a protocol may use it)


@dataclass
class JobResult:
    argv: list[str]
    exit_code: int | None
    signal: int | None
    timed_out: bool
    queue_s: float
    run_s: float
    events: list[dict] = field(default_factory=list)
    fault: Fault | None = None  # what the executor knows besides the output (typed)
    # `--bind` specs of host files the image's programs load (the bind model's MPI library,
    # Flux's PMI library): checked with the image's own loader when the job fails
    binds: list[str] = field(default_factory=list)
    runtime: str | None = None  # the container runtime that ran the job (for that check)


@dataclass(frozen=True)
class Option:
    """One command-line option of an executor: `--flag` on `harness run`, `field` in the
    executor's constructor. `kwargs` go to argparse's add_argument (help text required)."""

    flag: str
    field: str
    help: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class Caps:
    """What an executor can do beyond running jobs, declared (nobody probes for it)."""

    pulls_image: bool = False  # its nodes pull the image themselves: no SIF is pulled here
    describes_host: bool = False  # describe_host(): the host as its jobs see it
    counts_slots: bool = False  # slots(): the most ranks one of its jobs can get


class Executor(Protocol):
    name: str
    launcher: str
    version: str | None  # what runs the jobs, e.g. "flux-core 0.55.0" (known after preflight)
    caps: ClassVar[Caps]
    OPTIONS: ClassVar[tuple[Option, ...]]

    def preflight(self) -> None:
        """Raise HarnessError when what the executor needs is missing."""

    def run(self, job: Job) -> JobResult: ...

    def preview(self, job: Job) -> str:
        """What run(job) would submit or start, as text (a dry run); nothing runs."""

    def cancel_all(self) -> None:
        """Stop every job in flight (the run is being interrupted)."""

    def describe_host(self, host: dict[str, str]) -> dict[str, str]:
        """The host as the executor's jobs see it (only where caps.describes_host)."""

    def slots(self) -> int | None:
        """The most ranks one job can get, None when it cannot be told (only where
        caps.counts_slots; after preflight). More is the request's fault, never an image's."""
