"""A real executor that replays recorded job outputs: the loop runs in CI without apptainer.

It implements the executor interface (harness/run/executors/base.py) and is registered under
the name `replay` by the `replay` fixture (tests/conftest.py). Each image's output is a
recorded one (texts the lab's programs printed, shared LAB.md); `delay_s` makes a job take
time, so the order of concurrent iterations and interrupts can be tested.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from harness.run.executors.base import Caps, Job, JobResult, Option

# Recorded outputs (LAB.md "Outcomes observed" and tests/test_lab.py, bookworm/bullseye lab).
SUCCESS = (
    "LAMMPS (29 Sep 2021 - Update 2)\n"
    "Loop time of 1.51021 on 2 procs for 200 steps with 32000 atoms\n"
    "Performance: 57213.862 tau/day, 132.439 timesteps/s\n"
    "Total wall time: 0:00:01\n"
)
GLIBC = (
    "/usr/bin/lmp: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.34' not found "
    "(required by /lib/x86_64-linux-gnu/libmpi.so.40)\n"
)
GPU = "ERROR: Could not find/initialize a specified accelerator device (src/GPU/gpu_extra.h:35)\n"
MISSING = 'FATAL:   "lmp": executable file not found in $PATH\n'
# NetPIPE (harness/data/applications/netpipe.yaml): Debian 12's NPopenmpi 3.7.2 in the lab's
# openmpi-debian-12-amd64 under Open MPI 4.1.4's `mpirun -n 2` (bind), its first blocks: each
# rank's lines on stdout, the first rank's main loop on stderr; and twice what it printed on
# stdout under `mpirun -np 1`, as two 1-rank copies would
NETPIPE = (
    "Using no perturbations\n\nSending output to /dev/null\n1: vm\n"
    "Using no perturbations\n\nSending output to /dev/null\n0: vm\n"
)
NETPIPE_STDERR = (
    "Now starting the main loop\n"
    "  0:       1 bytes 149263 times -->      7.09 Mbps in       1.08 usec\n"
    "  1:       2 bytes  92904 times -->     24.44 Mbps in       0.62 usec\n"
    "  2:       3 bytes 160137 times -->     41.82 Mbps in       0.55 usec\n"
    "  3:       4 bytes 121808 times -->     24.81 Mbps in       1.23 usec\n"
    "  4:       6 bytes  60961 times -->     39.40 Mbps in       1.16 usec\n"
    "  5:       8 bytes  43031 times -->     45.19 Mbps in       1.35 usec\n"
    "  6:      12 bytes  46274 times -->     89.71 Mbps in       1.02 usec\n"
    "  7:      16 bytes  40828 times -->    118.76 Mbps in       1.03 usec\n"
    "  8:      24 bytes  54722 times -->    159.46 Mbps in       1.15 usec\n"
    "  9:      32 bytes  32657 times -->    261.33 Mbps in       0.93 usec\n"
    " 10:      48 bytes  56865 times -->    638.37 Mbps in       0.57 usec\n"
    " 11:      64 bytes  61737 times -->    669.91 Mbps in       0.73 usec\n"
    " 12:      96 bytes  70742 times -->    510.79 Mbps in       1.43 usec\n"
)
NETPIPE_SINGLETONS = (
    "Sending output to /dev/null\n0: vm\nNeed at least two processes (only given 1)\n"
    "Sending output to /dev/null\n0: vm\nNeed at least two processes (only given 1)\n"
)


@dataclass
class ReplayExecutor:
    outputs: dict = field(
        default_factory=dict
    )  # SIF file name -> {stdout, stderr, exit_code, delay_s}
    launcher: str = "mpirun"
    name: str = "replay"
    version: str | None = None
    caps: ClassVar[Caps] = Caps()
    OPTIONS: ClassVar[tuple[Option, ...]] = ()

    def __post_init__(self) -> None:
        self.ran: list[str] = []
        self.cancelled = threading.Event()

    def preflight(self) -> None:
        pass

    def run(self, job: Job) -> JobResult:
        out = self.outputs[Path(job.sif).name]
        self.ran.append(Path(job.sif).name)
        start = time.perf_counter()
        if self.cancelled.wait(out.get("delay_s", 0.0)):
            out = {"stderr": "killed\n", "exit_code": 137}
        job.stdout.write_text(out.get("stdout", ""))
        job.stderr.write_text(out.get("stderr", ""))
        return JobResult(
            argv=[
                "replay",
                *job.launcher_options,
                *job.runtime_options,
                str(job.sif),
                *job.command,
            ],
            exit_code=out.get("exit_code", 0),
            signal=None,
            timed_out=False,
            queue_s=0.0,
            run_s=time.perf_counter() - start,
        )

    def cancel_all(self) -> None:
        self.cancelled.set()
