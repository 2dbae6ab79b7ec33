"""Harness iterations under Slurm against the bare Slurm commands, side by side in one run.

Each round runs the same job four ways, in turn, on the lab's Slurm, each once the node is idle
(a job submitted while the previous one is still completing waits for it):
  srun          `srun -n 2 --mpi=pmix apptainer exec --pwd /opt/lab SIF lmp ...` in the
                foreground (no batch job: the least Slurm can do);
  sbatch --wait `sbatch --wait` of the batch script the harness writes (`exec srun ...`);
  sbatch+poll   `sbatch --parsable` of that script, then `scontrol show job` every 0.2 s
                until a final state (what a minimal script would do);
  harness       one iteration of `harness run --executor slurm` (the runner's wrapper_s:
                pick, cached SIF, the image's PMI, sbatch, scontrol polling, judge, record).
The per-run setup of the harness (preflight, `srun --mpi=list`, host, selection) is printed
apart. Ratios are printed, nothing is asserted: on a busy 2-core machine LAMMPS' own run-to-run
variation is large. Needs the lab and its Slurm (bash scripts/slurm.sh start); without them it
says what is missing and exits 0. Usage: bench_slurm.py [ROUNDS]
"""

from __future__ import annotations

import json
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from harness import records
from harness.run import runner

ROOT = Path(__file__).resolve().parents[1]
TAG = "127.0.0.1/lab/lammps-matrix:openmpi-debian-12-amd64"


def missing() -> str | None:
    for tool in ("sbatch", "srun", "apptainer"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    status = subprocess.run(
        ["bash", str(ROOT / "scripts" / "slurm.sh"), "status"], capture_output=True, text=True
    )
    if status.returncode != 0:
        return "Slurm is not up (bash scripts/slurm.sh start)"
    return None


def timed(argv: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def settle(timeout: float = 60.0) -> None:
    """Wait until squeue shows no job (pending, running or completing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout
        if not out.strip():
            return
        time.sleep(0.1)


def sbatch_poll(argv: list[str]) -> float:
    t = time.perf_counter()
    jobid = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    while True:
        out = subprocess.run(
            ["scontrol", "show", "job", "-o", jobid], capture_output=True, text=True
        ).stdout
        if any(f"JobState={s} " in out for s in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")):
            return time.perf_counter() - t
        time.sleep(0.2)


def main() -> None:
    if why := missing():
        print(f"bench_slurm: skipped: {why}")
        return
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    entries = yaml.safe_load((ROOT / "containers/lab/manifests.yaml").read_text())["images"]
    entry = next(e for e in entries if e["name"] == TAG)
    entry["command"] = [*entry["command"], "-var", "steps", "400"]  # a few seconds on 2 cores
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manifest = tmp / "m.yaml"
        manifest.write_text(yaml.safe_dump({"images": [entry]}))
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
        first = next(records.read(outdir))
        assert first.reason == "success", first.evidence
        argv = first.argv  # srun --mpi=pmix apptainer exec ...
        script = tmp / "bare.sh"
        script.write_text(f"#!/bin/bash\nexec {shlex.join(argv)}\n")
        bare_srun = [argv[0], "-n", "2", *argv[1:]]
        bare_sbatch = [
            "sbatch",
            "--parsable",
            "--wait",
            "--ntasks=2",
            "--time=5",
            f"--output={tmp / 'bare.out'}",
            f"--error={tmp / 'bare.err'}",
            str(script),
        ]
        poll_argv = [a for a in bare_sbatch if a != "--wait"]
        srun_s, sbatch_s, poll_s, harness_s, setup_s, job_s = [], [], [], [], [], []
        for i in range(rounds):
            settle()
            srun_s.append(timed(bare_srun))
            settle()
            sbatch_s.append(timed(bare_sbatch))
            settle()
            poll_s.append(sbatch_poll(poll_argv))
            settle()
            t = time.perf_counter()
            runner.run(runner.RunConfig(iters=i + 2, **cfg))
            whole = time.perf_counter() - t
            last = list(records.read(outdir))[-1]
            assert last.reason == "success", last.evidence
            harness_s.append(last.timings.wrapper_s)
            setup_s.append(whole - last.timings.wrapper_s)
            job_s.append(last.timings.queue_s + last.timings.run_s)
    med = {
        "srun": statistics.median(srun_s),
        "sbatch_wait": statistics.median(sbatch_s),
        "sbatch_poll": statistics.median(poll_s),
        "harness_iteration": statistics.median(harness_s),
        "harness_run_setup": statistics.median(setup_s),
        "slurm_queue_plus_run": statistics.median(job_s),
    }
    print(json.dumps({"rounds": rounds, **{f"{k}_median_s": round(v, 3) for k, v in med.items()}}))
    h = med["harness_iteration"]
    print(
        f"per iteration: harness {h:.2f} s; bare sbatch+poll {med['sbatch_poll']:.2f} s "
        f"(ratio {h / med['sbatch_poll']:.2f}), sbatch --wait {med['sbatch_wait']:.2f} s "
        f"(ratio {h / med['sbatch_wait']:.2f}), srun {med['srun']:.2f} s "
        f"(ratio {h / med['srun']:.2f}); Slurm's own queue+run (1 s resolution) "
        f"{med['slurm_queue_plus_run']:.0f} s; harness setup per run "
        f"{med['harness_run_setup']:.2f} s"
    )


if __name__ == "__main__":
    main()
