"""Selection over a 10,000-image manifest with cached artifacts (target: <= 50 ms per iteration).

Prints, side by side in one run: the cold start (manifest + 10,000 artifacts read from a
compspec-go cache directory + matching), a warm re-match of all images (artifacts in memory,
what an iteration would cost if it re-selected), and one seeded pick from the candidate list.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from harness.run.runner import pick
from harness.select import manifest, matching, modes
from harness.select.artifacts import ArtifactStore, cache_name

N = 10_000
ARCHES, OSES = ("amd64", "arm64"), (("ubuntu", "20.04"), ("ubuntu", "22.04"), ("rocky", "9.3"))
HOST = {
    "io.archspec.cpu.target": "amd64",
    "org.supercontainers.os.vendor": "ubuntu",
    "org.supercontainers.os.version": "22.04",
    "org.supercontainers.hardware.gpu.available": "no",
    "org.supercontainers.mpi.implementation": "OpenMPI",
}


def spec(i: int) -> dict:
    vendor, version = OSES[i % 3]
    return {
        "version": "0.0.0",
        "kind": "CompatibilitySpec",
        "metadata": {"name": "bench"},
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


def timed(fn, repeat: int) -> tuple[float, object]:
    samples, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples), result


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cache = root / "cache"
        cache.mkdir()
        images = []
        for i in range(N):
            ref = f"registry.example/bench/lammps:img-{i}"
            images.append({"name": ref, "artifact": ref + "-compspec"})
            (cache / cache_name(ref + "-compspec")).write_text(json.dumps(spec(i)))
        (root / "m.yaml").write_text(yaml.safe_dump({"images": images}))
        mode = modes.resolve("descriptive-mpi")

        def cold():
            imgs = manifest.load(root / "m.yaml")
            return matching.candidates(imgs, mode, HOST, ArtifactStore(cache=cache))

        cold_s, _ = timed(cold, 3)
        imgs = manifest.load(root / "m.yaml")
        store = ArtifactStore(cache=cache)
        matching.candidates(imgs, mode, HOST, store)
        warm_s, allowed = timed(lambda: matching.candidates(imgs, mode, HOST, store), 10)
        names = [v.image.name for v in allowed]
        pick_s, _ = timed(lambda: pick(names, 1, "descriptive-mpi", 5), 1000)
    target = 0.050
    print(f"images: {N}, candidates: {len(names)}")
    print(
        f"cold start (manifest + artifacts from cache + match): {cold_s * 1e3:8.1f} ms  "
        f"(once per run)"
    )
    print(
        f"warm re-match of all images:                          {warm_s * 1e3:8.1f} ms  "
        f"ratio to 50 ms target: {warm_s / target:.2f}"
    )
    print(
        f"per-iteration pick:                                   {pick_s * 1e3:8.3f} ms  "
        f"ratio to 50 ms target: {pick_s / target:.4f}"
    )


if __name__ == "__main__":
    main()
