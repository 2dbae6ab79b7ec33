"""Harness overhead per iteration against the bare command, side by side in one run.

For each round, the bare `mpirun -n 2 apptainer exec --pwd /opt/lab IMAGE lmp ...` is timed,
then one harness iteration of the same image (cached SIF, same argv) through the runner. The
overhead of an iteration is everything but the job's own run: its whole wall time (`wrapper_s`:
pick, registry digest check, launch, classification, parsing, record) minus the job's
(`run_s`). The bare and harnessed wall times are printed side by side too; on a busy 2-core
machine their difference is dominated by LAMMPS' own run-to-run variation. Targets: median
<= 0.2 s and <= 5 % of a ~5 s run. Needs the lab (make lab). Usage: bench_overhead.py [ROUNDS]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from harness import records
from harness.mpi import OPENMPI_ROOT_ENV
from harness.run import runner

ROOT = Path(__file__).resolve().parents[1]
TAG = "127.0.0.1/lab/lammps-matrix:openmpi-debian-12-amd64"


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    entries = yaml.safe_load((ROOT / "containers/lab/manifests.yaml").read_text())["images"]
    entry = next(e for e in entries if e["name"] == TAG)
    entry["command"] = [*entry["command"], "-var", "steps", "400"]  # about 5 s on 2 quiet cores
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "m.yaml"
        manifest.write_text(yaml.safe_dump({"images": [entry]}))
        outdir = Path(tmp) / "out"
        cfg = dict(manifests=manifest, mode="random", outdir=outdir, seed=1)
        runner.run(runner.RunConfig(iters=1, **cfg))  # warm: pull into the SIF cache
        first = next(records.iter_raw(outdir))
        argv = first["argv"]
        env = dict(os.environ, **OPENMPI_ROOT_ENV)
        bare, wrapped, overhead = [], [], []
        for i in range(rounds):
            t = time.perf_counter()
            subprocess.run(
                argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
            )
            bare.append(time.perf_counter() - t)
            runner.run(runner.RunConfig(iters=i + 2, **cfg))
            last = list(records.iter_raw(outdir))[-1]
            assert last["reason"] == "success", last["evidence"]
            wrapped.append(last["timings"]["wrapper_s"])
            overhead.append(last["timings"]["wrapper_s"] - last["timings"]["run_s"])
    med_o, med_b = statistics.median(overhead), statistics.median(bare)
    print(
        json.dumps(
            {
                "rounds": rounds,
                "bare_median_s": round(med_b, 3),
                "harness_median_s": round(statistics.median(wrapped), 3),
                "overhead_median_s": round(med_o, 3),
                "overhead_fraction": round(med_o / med_b, 4),
            }
        )
    )
    print(
        f"overhead median {med_o:.3f} s = {med_o / 0.2:.2f} x the 0.2 s target; "
        f"{100 * med_o / med_b:.1f} % of a {med_b:.1f} s run (target 5 %)"
    )


if __name__ == "__main__":
    main()
