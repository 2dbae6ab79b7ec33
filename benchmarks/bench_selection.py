"""Selection over 100,000 images through the CLI, against reading its input files alone.

Writes a manifest of N images and a compspec-go cache directory of N artifacts (every one
distinct, so no two share a digest), then times, each in its own fresh process:
  - `harness candidates --mode descriptive-basic` in a new process with the caches an earlier
    selection left on disk, the documented cold start of every later run (the parsed manifest,
    harness/select/manifest_cache.py, and the cache directory's index, checked by stat,
    harness/select/artifact_index.py; bound: 2 s at 100,000 images), and on a first run with
    no cache at all (the manifest parsed by PyYAML, every artifact file read and parsed), each
    with its peak memory;
  - `harness run --dry-run --iters 1`: the same selection inside a run;
  - the CPU time of the later run: on a machine shared with other work, wall time is
    inflated by that load (the load average is noted beside every result), CPU time far less;
  - the peer: a Python process that reads the manifest and every artifact file and parses
    nothing, the least any selection of these images can cost;
and in this process the per-iteration pick from the candidate list (bound: 50 ms), against a
warm re-match of every image (artifacts in memory).

    python benchmarks/bench_selection.py [--quick]     # --quick: 1,000 images
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import (  # noqa: E402
    arguments,
    best_of,
    child,
    emit,
    env_with,
    figure,
    median_s,
)
from harness.run.runner import pick  # noqa: E402
from harness.select import manifest, matching, modes  # noqa: E402
from harness.select.artifacts import ArtifactStore, cache_name  # noqa: E402

ARCHES, OSES = ("amd64", "arm64"), (("ubuntu", "20.04"), ("ubuntu", "22.04"), ("rocky", "9.3"))
HOST = {
    "io.archspec.cpu.target": "amd64",
    "org.supercontainers.os.vendor": "ubuntu",
    "org.supercontainers.os.version": "22.04",
    "org.supercontainers.hardware.gpu.available": "no",
    "org.supercontainers.mpi.implementation": "OpenMPI",
}
MODE = "descriptive-basic"
BOUND_S = 2.0  # issue 22: 100,000 images selected in <= 2 s through the CLI
PICK_BOUND_S = 0.050
READ_ALL = """
import os, sys
manifest = open(sys.argv[1], "rb").read()
cache = sys.argv[2]
for name in os.listdir(cache):
    with open(os.path.join(cache, name), "rb") as fh:
        fh.read()
"""


def spec(i: int) -> dict:
    vendor, version = OSES[i % 3]
    return {
        "version": "0.0.0",
        "kind": "CompatibilitySpec",
        "metadata": {"name": f"lammps-img-{i}"},  # every artifact distinct: no shared digest
        "compatibilities": [
            {
                "name": "org.supercontainers",
                "version": "0.0.0",
                "attributes": {
                    "hardware.gpu.available": "yes" if i % 5 == 0 else "no",
                    "mpi.implementation": "OpenMPI" if (i // 2) % 2 else "mpich",
                    "mpi.version": "4.1.2",
                    "os.vendor": vendor,
                    "os.version": version,
                    "os.release": version,
                },
            },
            {
                "name": "io.archspec",
                "version": "0.0.0",
                "attributes": {"cpu.target": ARCHES[i % 2]},
            },
        ],
    }


def write_inputs(root: Path, n: int) -> tuple[Path, Path, Path]:
    """The manifest, the artifact cache directory and the host file for n images."""
    cache = root / "cache"
    cache.mkdir()
    images = []
    for i in range(n):
        ref = f"registry.example/bench/lammps:img-{i}"
        images.append({"name": ref, "artifact": ref + "-compspec"})
        (cache / cache_name(ref + "-compspec")).write_text(json.dumps(spec(i)))
    path = root / "manifest.yaml"
    path.write_text(yaml.dump({"images": images}, Dumper=yaml.CSafeDumper))
    host = root / "host.yaml"
    host.write_text(yaml.safe_dump(HOST))
    return path, cache, host


def main() -> int:
    args = arguments(__doc__.splitlines()[0])
    n = 1_000 if args.quick else 100_000
    with tempfile.TemporaryDirectory(prefix="bench-selection-") as tmp:
        root = Path(tmp)
        path, cache, host = write_inputs(root, n)
        select = ["--manifests", str(path), "--cache", str(cache), "--host", str(host)]
        select += ["--mode", MODE]
        candidates = [sys.executable, "-m", "harness.cli", "candidates", *select]
        run = [sys.executable, "-m", "harness.cli", "run", *select, "--dry-run", "--iters", "1"]
        run += ["--outdir", str(root / "out")]
        fresh = iter(range(10))

        def first_run():  # a user cache of its own: the manifest is parsed
            return child(
                candidates, env=env_with({"XDG_CACHE_HOME": str(root / f"xdg-{next(fresh)}")})
            )

        cached_env = env_with({"XDG_CACHE_HOME": str(root / "xdg")})
        for _ in range(2):  # the caches filled (a file is indexed once 2 s old: RACY_NS)
            child(candidates, env=cached_env)
        peer = best_of(3, lambda: child([sys.executable, "-c", READ_ALL, str(path), str(cache)]))
        cached = best_of(3, lambda: child(candidates, env=cached_env))
        parsed = best_of(2, first_run)
        in_run = best_of(3, lambda: child(run, env=cached_env))
        allowed = len(cached.stdout.splitlines())

        images = manifest.load(path)
        store = ArtifactStore(cache=cache)
        mode = modes.resolve(MODE)
        names = [v.image.name for v in matching.candidates(images, mode, HOST, store)]
        warm = median_s(lambda: matching.candidates(images, mode, HOST, store), 5)
        pick_s = median_s(lambda: pick(names, 1, MODE, 5), 1000)

    bound = BOUND_S if n >= 100_000 else None
    reading = f"reading the manifest and {n:,} artifact files"
    later = "a new process, caches on disk"
    figures = [
        figure(f"candidates, {later}", cached.seconds, "s", reading, peer.seconds, bound),
        figure(f"candidates, {later}: CPU time", cached.cpu_s, "s", reading, peer.cpu_s),
        figure(f"candidates, {later}: peak memory", cached.peak_mb, "MB", reading, peer.peak_mb),
        figure(
            f"run --dry-run --iters 1, {later}", in_run.seconds, "s", reading, peer.seconds, bound
        ),
        figure("candidates, first run, no cache", parsed.seconds, "s", reading, peer.seconds),
        figure("candidates, first run: peak memory", parsed.peak_mb, "MB", reading, peer.peak_mb),
        figure(
            "pick per iteration", pick_s, "s", "warm re-match of every image", warm, PICK_BOUND_S
        ),
    ]
    print(f"selection: {n:,} images, {allowed:,} candidates ({MODE}); each a fresh process")
    emit("selection", f"{n:,} images", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
