"""Benchmark `harness report` against a plain streaming pass over the same records.

Two cases of realistic records (about 1.9 kB each, like the lab's): `sampled` (six modes, the
gradient's success rates and failure mix) and `census` (every image in turn, a census.json).
For each, in its own interpreter so that imports and peak memory count honestly:

  - peer:   `harness.records.read` over the file, counting the records: one typed streaming
            pass, the least any reader of the records does;
  - report: `harness report OUTDIR --out DIR` as a user runs it (one pass, the summary, the
            tables printed, report.csv/.md/.json/.html and the figures as PNG and SVG).

Targets at 1,000,000 records (issue 22): the report within 2x the peer measured in the same
run, at most 15 s and at most 200 MB peak RSS. Prints a table, the ratio report / peer, and one
JSON line of the figures (benchmarks/measure.py). `--quick` (20,000 records, once) is the size
CI runs: it checks that the benchmark works; the bounds are judged at the full size only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.measure import emit, figure, within  # noqa: E402
from harness.records import CENSUS_FILE, CENSUS_SCHEMA, RECORDS_FILE, Record, Timings  # noqa: E402

RECORDS = 1_000_000
QUICK = 20_000
MAX_RATIO = 2.0
MAX_S = 15.0
MAX_MB = 200.0
MODES = ("random", "basic", "platform", "platform-version", "descriptive-basic", "descriptive-mpi")
# Success probability per mode and how the failures split, roughly like the experiment.
SUCCESS = dict(zip(MODES, (0.12, 0.25, 0.45, 0.6, 0.8, 0.93), strict=True))
FAILURES = {
    "arch": 5,
    "os-abi": 4,
    "gpu": 3,
    "mpi": 4,
    "mpi-singleton": 2,
    "missing-binary": 2,
    "pull": 1,
    "timeout": 1,
    "unknown": 1,
    "infra": 1,
}
TAGS = [
    f"{os_}-{mpi}-{arch}{gpu}"
    for os_ in ("ubuntu22.04", "rocky8", "debian12", "alpine3.19")
    for mpi in ("openmpi4.1", "mpich4.1", "intelmpi2021")
    for arch in ("amd64", "arm64")
    for gpu in ("", "-cuda12.2")
]
REPO = "ghcr.io/compat-lab/lammps"
EVIDENCE = {
    "success": "Total wall time: 0:00:{s:02d}",
    "arch": "exec /usr/bin/lmp: exec format error",
    "os-abi": "/lib64/libc.so.6: version `GLIBC_2.34' not found (required by lmp)",
    "gpu": "ERROR: GPU package does not (yet) work on this system (src/GPU/gpu_extra.h:57)",
    "mpi": "[node{s:03d}:{s}] PMIx_Init failed: PMIX_ERR_UNREACH",  # a pid in it: many lines
    "mpi-singleton": "Loop time of 2.7234 on 1 procs for 200 steps with 32000 atoms",
    "missing-binary": 'FATAL: "lmp": executable file not found in $PATH',
    "pull": "FATAL: While pulling image: manifest unknown: manifest unknown",
    "timeout": "killed after 600 s",
    "unknown": "Segmentation fault (core dumped)",
    "infra": "the registry did not answer",
}
TEMPLATE = asdict(
    Record(
        iteration=0,
        mode="",
        seed=0,
        host={
            "io.archspec.cpu.target": "amd64",
            "io.archspec.cpu.model": "AMD EPYC 7543 32-Core Processor",
            "org.supercontainers.os.vendor": "debian",
            "org.supercontainers.os.version": "12",
            "org.supercontainers.libc.version": "2.36",
            "org.supercontainers.mpi.implementation": "OpenMPI",
            "org.supercontainers.mpi.version": "4.1.4",
            "org.supercontainers.hardware.gpu.available": "no",
            "org.supercontainers.kernel.version": "6.1.0-18-amd64",
        },
        candidates=[],
        image=None,
        artifact=None,
        artifact_digest=None,
        image_digest=None,
        executor="local",
        executor_version="OpenMPI 4.1.4",
        launcher="mpirun",
        mpi_model="bind",
        np=2,
        argv=[],
        exit_code=0,
        signal=None,
        timed_out=False,
        pulled=False,
        timings=Timings(),
        stdout_path=None,
        stderr_path=None,
        figures={},
        reason="",
        evidence="",
        started_at="",
    )
)


def record(i: int, mode: str, rng: random.Random) -> bytes:
    """One record as the runner writes it (a JSON line, keys sorted)."""
    tags = rng.sample(TAGS, 6)
    if mode == "census":
        tags[0] = TAGS[i % len(TAGS)]
    p = image_success(tags[0]) if mode == "census" else SUCCESS[mode]
    reason = "success"
    if rng.random() >= p:
        reason = rng.choices(list(FAILURES), weights=list(FAILURES.values()))[0]
    ok = reason == "success"
    run_s = rng.lognormvariate(3.0, 0.25) if ok else rng.uniform(0.2, 4.0)
    sif = f"/var/cache/compat-harness/sif/{tags[0]}.sif"
    logs = f"/srv/results/campaign/logs/{mode}/iter-{i:04d}.{rng.getrandbits(32):08x}"
    rec = dict(TEMPLATE)
    rec.update(
        iteration=i,
        mode=mode,
        seed=1234,
        candidates=[f"{REPO}:{t}" for t in tags],
        image=f"{REPO}:{tags[0]}",
        artifact=f"{REPO}:{tags[0]}-compspec",
        artifact_digest=f"sha256:{rng.getrandbits(256):064x}",
        image_digest=f"sha256:{rng.getrandbits(256):064x}",
        argv=["/usr/bin/mpirun", "-n", "2", "/usr/bin/apptainer", "exec", sif, "lmp"]
        + ["-in", "in.lj"],
        exit_code=0 if ok else rng.choice([1, 127, 139, 255]),
        timed_out=reason == "timeout",
        pulled=rng.random() < 0.1,
        timings={
            "select_s": rng.uniform(0, 0.05),
            "pull_s": rng.uniform(0, 30),
            "queue_s": 0.0,
            "run_s": run_s,
            "wrapper_s": run_s + rng.uniform(0.1, 0.5),
        },
        stdout_path=logs + ".out",
        stderr_path=logs + ".err",
        figures=figures(run_s) if ok else {},
        reason=reason,
        evidence=EVIDENCE[reason].format(s=rng.randrange(1000) if reason == "mpi" else int(run_s)),
        started_at=f"2025-11-25T14:{i // 60 % 60:02d}:{i % 60:02d}+00:00",
        steps={"pick": 0.001, "acquire": 0.2, "launch": run_s, "judge": 0.002},
        stage=None if ok else "launch",
    )
    return orjson.dumps(rec, option=orjson.OPT_SORT_KEYS) + b"\n"


def figures(run_s: float) -> dict:
    loop = max(run_s - 2, 0.1)
    return {
        "total_wall_time_s": round(run_s - 1.2, 3),
        "loop_time_s": round(loop, 3),
        "procs": 2,
        "atoms": 32000,
        "steps": 200,
        "timesteps_per_s": round(200 / loop, 3),
        "tau_per_day": round(86400 * 200 * 0.005 / loop, 3),
        "katom_step_per_s": round(32 * 200 / loop, 3),
        "lammps_version": "2Aug2023",
    }


def image_success(tag: str) -> float:
    """A census image's success probability: fixed per image, like a real matrix."""
    return random.Random(tag).choice((0.0, 0.0, 0.1, 0.5, 0.9, 0.97, 1.0))


def generate(outdir: Path, n: int, census: bool, seed: int = 0) -> int:
    """n records into outdir/records.jsonl (a census: mode `census` and a census.json);
    returns the file's size in bytes."""
    rng = random.Random(seed)
    outdir.mkdir(parents=True, exist_ok=True)
    path = outdir / RECORDS_FILE
    with path.open("wb", buffering=1 << 20) as fh:
        for i in range(n):
            if census:
                fh.write(record(i, "census", rng))
            else:
                fh.write(record(i // len(MODES), MODES[i % len(MODES)], rng))
    if census:
        write_census_file(outdir)
    return path.stat().st_size


def write_census_file(outdir: Path) -> None:
    """census.json: each mode's candidates narrow the matrix like the gradient does."""
    names = [f"{REPO}:{t}" for t in TAGS]
    narrow = {
        "random": lambda t: True,
        "basic": lambda t: "amd64" in t,
        "platform": lambda t: "amd64" in t and "debian" in t,
        "platform-version": lambda t: "amd64" in t and "debian12" in t,
        "descriptive-basic": lambda t: "amd64" in t and "debian12" in t and "cuda" not in t,
        "descriptive-mpi": lambda t: "amd64" in t and "debian12-openmpi" in t and "cuda" not in t,
    }
    body = {
        "schema": CENSUS_SCHEMA,
        "manifests": "manifests.yaml",
        "host": {"io.archspec.cpu.target": "amd64"},
        "images": names,
        "repeat": 0,
        "seed": 0,
        "modes": {m: {"candidates": [n for n in names if keep(n)]} for m, keep in narrow.items()},
    }
    (outdir / CENSUS_FILE).write_text(json.dumps(body, indent=2) + "\n")


PEER = """
import sys
from pathlib import Path
from harness import records
print(sum(1 for _ in records.read(Path(sys.argv[1]))))
"""


def measure(argv: list[str]) -> dict:
    """Wall time, CPU time and peak RSS of one child process (its own rusage, from wait4)."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        child = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode:
            err.seek(0)
            raise SystemExit(f"bench_report: {' '.join(argv[1:4])} failed: {err.read()[-800:]}")
    return {
        "s": round(wall, 3),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "rss_mb": round(usage.ru_maxrss / 1024, 1),
    }


def bench(outdir: Path, dest: Path, repeat: int) -> dict:
    """The best of `repeat` runs of the report and of its peer, taken in turns."""
    report_argv = [sys.executable, "-m", "harness.cli", "report", str(outdir), "--out", str(dest)]
    peer_argv = [sys.executable, "-c", PEER, str(outdir)]
    reports, peers = [], []
    for _ in range(repeat):
        peers.append(measure(peer_argv))
        reports.append(measure(report_argv))
    rep = min(reports, key=lambda r: r["s"])
    peer = min(peers, key=lambda r: r["s"])
    rep["rss_mb"] = max(r["rss_mb"] for r in reports)
    return {"report": rep, "peer": peer, "ratio": round(rep["s"] / peer["s"], 3)}


def show(name: str, n: int, size: int, case: dict) -> None:
    rep, peer = case["report"], case["peer"]
    print(f"== {name}: {n} records, {size / 1e6:.0f} MB ({size / n:.0f} B/record)")
    print(f"{'':24}{'report':>10}{'peer':>10}{'ratio':>8}{'bound':>10}")
    print(
        f"{'wall time (s)':24}{rep['s']:10.2f}{peer['s']:10.2f}{case['ratio']:8.2f}"
        f"{f'{MAX_S:.0f} s, {MAX_RATIO:.0f}x':>10}"
    )
    cpu_ratio = rep["cpu_s"] / peer["cpu_s"]
    print(f"{'CPU time (s)':24}{rep['cpu_s']:10.2f}{peer['cpu_s']:10.2f}{cpu_ratio:8.2f}")
    print(f"{'peak RSS (MB)':24}{rep['rss_mb']:10.0f}{peer['rss_mb']:10.0f}{'':8}{MAX_MB:10.0f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, help=f"records per case (default {RECORDS:,})")
    ap.add_argument("--quick", action="store_true", help=f"{QUICK:,} records, once (CI)")
    ap.add_argument("--repeat", type=int, help="runs of each measurement, best kept (default 2)")
    args = ap.parse_args()
    n = args.records or (QUICK if args.quick else RECORDS)
    repeat = args.repeat or (1 if args.quick else 2)
    full = n >= RECORDS
    cases: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        for name in ("sampled", "census"):
            outdir = Path(tmp) / name
            size = generate(outdir, n, census=name == "census")
            case = bench(outdir, Path(tmp) / f"{name}-report", repeat)
            cases[name] = case
            show(name, n, size, case)
            (outdir / RECORDS_FILE).unlink()  # 1.9 GB at full size: not two at once
    peer = "records.read, one streaming pass"
    figures = []
    for name, case in cases.items():
        rep, base = case["report"], case["peer"]
        figures += [
            figure(f"{name}: report", rep["s"], "s", peer, base["s"],
                   MAX_S if full else None, MAX_RATIO if full else None),
            figure(f"{name}: report, CPU time", rep["cpu_s"], "s", peer, base["cpu_s"]),
            figure(f"{name}: report, peak memory", rep["rss_mb"], "MB", peer, base["rss_mb"],
                   MAX_MB if full else None),
        ]  # fmt: skip
    ok = all(within(f) is not False for f in figures)
    if full:
        verdict = "within every bound" if ok else "OVER A BOUND"
    else:
        verdict = f"the bounds are judged at {RECORDS:,} records, not at this size"
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; {verdict}")
    emit("report", f"{n:,} records", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
