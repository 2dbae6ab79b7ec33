"""Native selection next to the real `compspec match`, in one run, on the lab manifest.

Both matchers read the same manifest (the lab's image/artifact pairs from
containers/lab/manifests.yaml) and the same host, for every built-in mode but random; the times
are medians. compspec-go fetches every artifact from the registry on every run (its `--cache`
never reads back), so it is compared both with the native matcher's usual path (artifacts in
the harness's registry cache) and with a native run that fetches them all too. The 10,000-image
target (<= 50 ms with cached artifacts) is benchmarks/bench_selection.py's.

Needs the lab registry (https://127.0.0.1) with the artifacts published, and compspec-go on PATH
or in $HARNESS_COMPSPEC; without them it says what is missing and exits 0.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from harness.errors import HarnessError
from harness.select import compspec_go, manifest, matching, modes
from harness.select.artifacts import ArtifactStore, probe_registry

ROOT = Path(__file__).resolve().parents[1]
LAB_MANIFEST = ROOT / "containers" / "lab" / "manifests.yaml"
HOST = {  # Debian 12 amd64 with Open MPI, spelled as the lab's artifacts spell it
    "io.archspec.cpu.target": "amd64",
    "org.supercontainers.os.vendor": "debian",
    "org.supercontainers.os.version": "12",
    "org.supercontainers.hardware.gpu.available": "no",
    "org.supercontainers.mpi.implementation": "OpenMPI",
}
REPEAT_GO = 5
REPEAT_NATIVE = 200


def median_s(fn, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def main() -> int:
    if not LAB_MANIFEST.is_file():
        print(f"bench_compspec: skipped: {LAB_MANIFEST.relative_to(ROOT)} is not written")
        return 0
    pairs = [
        {"name": i["name"], "artifact": i["artifact"]}
        for i in yaml.safe_load(LAB_MANIFEST.read_text())["images"]
    ]
    try:
        probe_registry(pairs[0]["artifact"])
    except HarnessError as exc:
        print(f"bench_compspec: skipped: {exc}")
        return 0
    try:
        exe = compspec_go.binary()
    except HarnessError as exc:
        print(f"bench_compspec: compspec-go part skipped: {exc}")
        exe = None

    chosen = [m for m in modes.builtin().values() if m.keys]
    with tempfile.TemporaryDirectory(prefix="bench-compspec-") as tmp:
        tmp = Path(tmp)
        path = tmp / "lab-manifest.yaml"
        path.write_text(yaml.safe_dump({"images": pairs}, sort_keys=False))
        graph = compspec_go.write_schema_graph(tmp / "schema-graph.json")
        images = manifest.load(path)
        cache = tmp / "registry-cache"
        ArtifactStore(registry_cache=cache).get(images[0].name, images[0].artifact)  # import oras
        warm_store = ArtifactStore(registry_cache=cache)
        fresh = iter(range(10**6))

        rows = []
        for mode in chosen:
            native_names = [
                v.image.name for v in matching.candidates(images, mode, HOST, warm_store)
            ]

            def warm(mode=mode):
                matching.candidates(images, mode, HOST, warm_store)

            def cached(mode=mode):
                imgs = manifest.load(path)
                matching.candidates(imgs, mode, HOST, ArtifactStore(registry_cache=cache))

            def fetched(mode=mode):
                store = ArtifactStore(registry_cache=tmp / f"fresh-{next(fresh)}")
                matching.candidates(manifest.load(path), mode, HOST, store)

            row = {
                "mode": mode.name,
                "n": len(native_names),
                "warm": median_s(warm, REPEAT_NATIVE),
                "cached": median_s(cached, REPEAT_NATIVE // 4),
                "fetched": median_s(fetched, REPEAT_GO),
            }
            if exe:
                fields = compspec_go.criteria(mode, HOST)
                go_names = compspec_go.run(path, fields, exe=exe, graph=graph).matches
                assert sorted(go_names) == sorted(native_names), (mode.name, go_names)
                row["go"] = median_s(
                    lambda f=fields: compspec_go.run(path, f, exe=exe, graph=graph), REPEAT_GO
                )
            rows.append(row)

        cli = None
        if exe:
            host_file = tmp / "host.yaml"
            host_file.write_text(yaml.safe_dump(HOST))
            env = dict(os.environ, XDG_CACHE_HOME=str(tmp / "xdg"))
            argv = [sys.executable, "-m", "harness.cli", "candidates", "--manifests", str(path)]
            argv += ["--mode", "descriptive-mpi", "--host", str(host_file), "--json"]
            subprocess.run(argv, check=True, capture_output=True, env=env, cwd=ROOT)  # fill cache
            cli = median_s(
                lambda: subprocess.run(argv, check=True, capture_output=True, env=env, cwd=ROOT),
                REPEAT_GO,
            )

    print(
        f"lab manifest: {len(pairs)} images, host {HOST['org.supercontainers.os.vendor']} "
        f"{HOST['org.supercontainers.os.version']} {HOST['io.archspec.cpu.target']}; medians"
    )
    head = f"{'mode':18} {'cand':>4} {'native warm':>12} {'native cached':>14} {'native fetch':>13}"
    if exe:
        head += f" {'compspec match':>15} {'go/cached':>10} {'go/fetch':>9}"  # time ratios
    print(head)
    for r in rows:
        line = (
            f"{r['mode']:18} {r['n']:>4} {r['warm'] * 1e3:>9.3f} ms {r['cached'] * 1e3:>11.2f} ms"
            f" {r['fetched'] * 1e3:>10.1f} ms"
        )
        if exe:
            line += (
                f" {r['go'] * 1e3:>12.1f} ms {r['go'] / r['cached']:>9.0f}x"
                f" {r['go'] / r['fetched']:>8.1f}x"
            )
        print(line)
    print("native warm:   artifacts in memory (what a run's re-selection costs)")
    print("native cached: manifest + artifacts from the harness's registry cache + match")
    print("native fetch:  manifest + every artifact fetched from the registry (oras) + match")
    if exe:
        print("compspec match: one `compspec match` process (fetches every artifact, every run)")
        go_cli = statistics.median(r["go"] for r in rows if r["mode"] == "descriptive-mpi")
        print(
            f"process to process, descriptive-mpi: `harness candidates` {cli * 1e3:.0f} ms "
            f"(cached artifacts, Python start-up included), `compspec match` "
            f"{go_cli * 1e3:.0f} ms: ratio compspec/harness {go_cli / cli:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
