"""A harness iteration under Slurm against a bare srun of the same job, in one run.

Each round runs the same 2-rank job twice, in turn, each once the node is idle (a job started
while the previous one is still completing would wait for it):
  srun     the argv the harness recorded (`srun --job-name=... --ntasks=2 --mpi=pmix apptainer
           exec --pwd /opt/lab SIF lmp ...`), in the foreground, its output into files;
  harness  one iteration of `harness run --executor slurm` (the record's wrapper_s: pick,
           cached SIF, the image's PMI, srun, Slurm's verdict, judge, record).
The figure is harness / srun of the medians (bound: 1.2). The harness's setup per run
(preflight, `srun --mpi=list`, host, selection) is printed apart. Needs the lab and its Slurm
(bash scripts/slurm.sh start); without them it says what is missing and exits 0.

    python benchmarks/bench_slurm.py [--rounds N] [--steps N] [--quick] [--check]

--quick: 2 rounds of a 100-step job (CI). Ends with one JSON line of its figures
(benchmarks/measure.py); --check exits 1 when the ratio is over its bound.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import lab_bench  # noqa: E402
from harness.run import runner  # noqa: E402
from tests.test_slurm import slurm_missing  # noqa: E402

BOUND = 1.2


def settle(timeout: float = 60.0) -> None:
    """Wait until squeue shows no job (pending, running or completing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout.strip():
            return
        time.sleep(0.05)


def bare(argv: list[str], logs: Path) -> float:
    """The recorded srun argv as a user would start it (a fresh job name each time)."""
    argv = [a if not a.startswith("--job-name=") else "--job-name=bench-bare" for a in argv]
    return lab_bench.timed(argv, logs)


def measure(rounds: int, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manifest = lab_bench.manifest(tmp, steps)
        outdir = tmp / "out"
        cfg = dict(
            manifests=manifest,
            mode="random",
            outdir=outdir,
            seed=1,
            executor="slurm",
            mpi_model="hybrid",
        )
        runner.run(runner.RunConfig(iters=1, **cfg))  # warm: SIF cache, the image's PMI
        argv = lab_bench.last_record(outdir)["argv"]
        srun_s, harness_s, setup_s = [], [], []
        for i in range(rounds):
            settle()
            srun_s.append(bare(argv, tmp))
            settle()
            t = time.perf_counter()
            runner.run(runner.RunConfig(iters=i + 2, **cfg))
            whole = time.perf_counter() - t
            wrapper = lab_bench.last_record(outdir)["timings"]["wrapper_s"]
            harness_s.append(wrapper)
            setup_s.append(whole - wrapper)
    srun, harness = statistics.median(srun_s), statistics.median(harness_s)
    return {
        "peer_median_s": round(srun, 3),
        "harness_median_s": round(harness, 3),
        "harness_setup_median_s": round(statistics.median(setup_s), 3),
    }


if __name__ == "__main__":
    sys.exit(lab_bench.main(__doc__, "slurm", "srun", BOUND, slurm_missing, measure, rounds=7))
