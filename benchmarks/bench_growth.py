"""How cost grows: selection over 1k, 10k, 100k images; a pass over 10k, 100k, 1M records.

Each step runs in a fresh process and reports its wall time, its CPU time and its own peak
resident memory (wait4's rusage of that process); each step's peer is the step before it, so
the ratio is the growth factor for ten times the input (1.0: constant, 10: linear); the first
step's peer is an idle Python process.
  - selection: `harness candidates --mode descriptive-basic` over N images with a compspec-go
    cache directory of N artifacts (benchmarks/bench_selection.py's inputs), on the manifest's
    first run (parsed by PyYAML) and on a later one (read from the harness's manifest cache);
  - records: one streaming pass over N records through `harness.records.read()`, counting them
    by mode and reason, the least any report, status or resume can cost. (The report and resume
    benchmarks measure those against such a pass.)

    python benchmarks/bench_growth.py [--quick]     # --quick: 1k images, 10k records
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_selection import MODE, write_inputs  # noqa: E402
from benchmarks.measure import Child, arguments, child, emit, env_with, figure  # noqa: E402
from harness.records import RECORDS_FILE, Record, Timings  # noqa: E402

MODES = ("random", "basic", "platform", "platform-version", "descriptive-basic", "descriptive-mpi")
REASONS = ("success", "arch", "os-abi", "mpi", "gpu", "missing-binary", "timeout")
# wall time, and CPU time beside it: on a shared machine the other load inflates the first
TRACKED = (("time", "s", "seconds"), ("CPU time", "s", "cpu_s"), ("peak memory", "MB", "peak_mb"))
STREAM = """
import collections, sys
from pathlib import Path
from harness import records
counts = collections.Counter((r.mode, r.reason) for r in records.read(Path(sys.argv[1])))
print(sum(counts.values()))
"""


def record(image: str) -> dict:
    """A record as a run writes it: candidate list, argv, host facts, a few events."""
    candidates = [f"registry.example/lab/lammps:img-{i}" for i in range(12)]
    rec = Record(
        iteration=0,
        mode=MODES[0],
        seed=1,
        host={"io.archspec.cpu.target": "amd64", "org.supercontainers.os.vendor": "debian"},
        candidates=candidates,
        image=image,
        artifact=image + "-compspec",
        artifact_digest="sha256:" + "ab" * 32,
        image_digest="sha256:" + "cd" * 32,
        executor="local",
        launcher="mpirun",
        mpi_model="bind",
        np=2,
        argv=["mpirun", "-n", "2", "apptainer", "exec", image, "lmp", "-in", "in.lj"],
        exit_code=0,
        signal=None,
        timed_out=False,
        pulled=False,
        timings=Timings(select_s=0.001, run_s=3.2),
        stdout_path="logs/iter-0000.out",
        stderr_path="logs/iter-0000.err",
        figures={"atom_steps_per_s": 1.2e6},
        reason="success",
        evidence="Total wall time: 0:00:03",
        started_at="2026-01-01T00:00:00+00:00",
        events=[{"t": 0.0, "what": "select"}, {"t": 3.2, "what": "exit"}],
    )
    return asdict(rec)


def write_records(outdir: Path, n: int) -> int:
    """n records (each mode in turn, every reason); the file's size in bytes."""
    outdir.mkdir(parents=True)
    base = record("registry.example/lab/lammps:img-0")
    with (outdir / RECORDS_FILE).open("wb") as fh:
        for i in range(n):
            base["iteration"], base["mode"] = i // len(MODES), MODES[i % len(MODES)]
            base["reason"] = REASONS[i % len(REASONS)]
            fh.write(orjson.dumps(base) + b"\n")
    return (outdir / RECORDS_FILE).stat().st_size


def sweep(label: str, steps: list[tuple[str, Child]], idle: Child) -> list[dict]:
    """Figures for each step (size, measured), each against the step before; the first one
    against an idle Python process (the fixed cost of starting one)."""
    figures, before = [], ("an idle Python process", idle)
    for size, measured in steps:
        for what, unit, attr in TRACKED:
            peer = before[0] if before[1] is idle else f"{label}, {before[0]}"
            value, prior = getattr(measured, attr), getattr(before[1], attr)
            figures.append(figure(f"{label}, {size}: {what}", value, unit, peer, prior))
        before = (size, measured)
    return figures


def main() -> int:
    args = arguments(__doc__.splitlines()[0])
    image_sizes = [1_000] if args.quick else [1_000, 10_000, 100_000]
    record_sizes = [10_000] if args.quick else [10_000, 100_000, 1_000_000]
    first, later, passes = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-growth-") as tmp:
        tmp = Path(tmp)
        for n in image_sizes:
            root = tmp / f"images-{n}"
            root.mkdir()
            path, cache, host = write_inputs(root, n)
            argv = [sys.executable, "-m", "harness.cli", "candidates", "--mode", MODE]
            argv += ["--manifests", str(path), "--cache", str(cache), "--host", str(host)]
            env = env_with({"XDG_CACHE_HOME": str(root / "xdg")})
            first.append((f"{n:,} images", child(argv, env=env)))
            later.append((f"{n:,} images", child(argv, env=env)))
            print(
                f"  {n:>9,} images: first run {first[-1][1].seconds:6.2f} s, later run "
                f"{later[-1][1].seconds:6.2f} s, {later[-1][1].peak_mb:6.0f} MB",
                flush=True,
            )
        for n in record_sizes:
            outdir = tmp / f"records-{n}"
            size = write_records(outdir, n)
            measured = child([sys.executable, "-c", STREAM, str(outdir)])
            assert int(measured.stdout) == n, measured.stdout
            passes.append((f"{n:,} records", measured))
            print(
                f"  {n:>9,} records ({size / 1e6:,.0f} MB): {measured.seconds:6.2f} s, "
                f"{measured.peak_mb:6.0f} MB",
                flush=True,
            )
    idle = min((child([sys.executable, "-c", "pass"]) for _ in range(3)), key=lambda c: c.seconds)
    figures = sweep("selection, first run", first, idle)
    figures += sweep("selection, later run", later, idle)
    figures += sweep("records.read() pass", passes, idle)
    sizes = f"{image_sizes[-1]:,} images, {record_sizes[-1]:,} records"
    emit("growth", sizes, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
