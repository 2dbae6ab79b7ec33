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
# NetPIPE (harness/data/applications/netpipe.yaml): the first blocks of Debian 12's NPopenmpi
# 3.7.2 run here under Open MPI 4.1.4's `mpirun -np 2 NPopenmpi -u 8192 -p 0 -o /dev/null`
# (each rank prints its first lines); and twice what it printed under `mpirun -np 1`, as two
# 1-rank copies would
NETPIPE = (
    "Using no perturbations\n\nSending output to /dev/null\n0: vm\n"
    "Using no perturbations\n\nSending output to /dev/null\n1: vm\n"
    "Now starting the main loop\n"
    "  0:       1 bytes 289262 times -->      3.67 Mbps in       2.08 usec\n"
    "  1:       2 bytes  48132 times -->      8.99 Mbps in       1.70 usec\n"
    "  2:       3 bytes  58929 times -->      5.74 Mbps in       3.99 usec\n"
    "  3:       4 bytes  16709 times -->     11.44 Mbps in       2.67 usec\n"
    "  4:       6 bytes  28120 times -->      9.57 Mbps in       4.79 usec\n"
    "  5:       8 bytes  10448 times -->     28.01 Mbps in       2.18 usec\n"
    "  6:      12 bytes  28681 times -->     22.08 Mbps in       4.15 usec\n"
    "  7:      16 bytes  10049 times -->     53.17 Mbps in       2.30 usec\n"
    "  8:      24 bytes  24499 times -->     42.44 Mbps in       4.31 usec\n"
    "  9:      32 bytes   8691 times -->     94.45 Mbps in       2.58 usec\n"
    " 10:      48 bytes  20552 times -->     51.38 Mbps in       7.13 usec\n"
    " 11:      64 bytes   4968 times -->    121.76 Mbps in       4.01 usec\n"
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
