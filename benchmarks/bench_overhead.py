"""A harness iteration (local executor) against the bare launcher command, in one run.

Each round times the bare `mpirun -n 2 apptainer exec --pwd /opt/lab IMAGE lmp ...` (the argv
the harness recorded, the same environment, its output into files), then one harness iteration
of the same image (cached SIF) through the runner: its wall time (`wrapper_s`: pick, registry
digest check, launch, classification, parsing, record). The figure is harness / bare of the
medians (bound: 1.05); the harness's own overhead (wrapper_s - run_s) is printed beside it.
Needs the lab (make lab); without it, it says what is missing and exits 0.

    python benchmarks/bench_overhead.py [--rounds N] [--steps N] [--quick] [--check]

--quick: 2 rounds of a 100-step job (CI). Ends with one JSON line of its figures
(benchmarks/measure.py); --check exits 1 when the ratio is over its bound.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import lab_bench  # noqa: E402
from harness.mpi import OPENMPI_ROOT_ENV  # noqa: E402
from harness.run import runner  # noqa: E402
from tests.conftest import lab_missing  # noqa: E402

BOUND = 1.05


def measure(rounds: int, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manifest = lab_bench.manifest(tmp, steps)
        outdir = tmp / "out"
        cfg = dict(manifests=manifest, mode="random", outdir=outdir, seed=1)
        runner.run(runner.RunConfig(iters=1, **cfg))  # warm: pull into the SIF cache
        argv = lab_bench.last_record(outdir)["argv"]
        env = dict(os.environ, **OPENMPI_ROOT_ENV)  # what the harness gives mpirun
        bare_s, harness_s, overhead_s = [], [], []
        for i in range(rounds):
            bare_s.append(lab_bench.timed(argv, tmp, env))
            runner.run(runner.RunConfig(iters=i + 2, **cfg))
            timings = lab_bench.last_record(outdir)["timings"]
            harness_s.append(timings["wrapper_s"])
            overhead_s.append(timings["wrapper_s"] - timings["run_s"])
    med_bare, med_harness = statistics.median(bare_s), statistics.median(harness_s)
    return {
        "peer_median_s": round(med_bare, 3),
        "harness_median_s": round(med_harness, 3),
        "overhead_median_s": round(statistics.median(overhead_s), 3),
    }


if __name__ == "__main__":
    sys.exit(lab_bench.main(__doc__, "overhead", "mpirun", BOUND, lab_missing, measure, rounds=5))
