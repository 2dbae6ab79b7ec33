"""Native selection next to the real `compspec match`, in one run, on the lab's artifacts.

Both matchers read the same manifest (the lab's image/artifact pairs from
containers/lab/manifests.yaml) and the same host, for every built-in mode whose keys are all
plain attribute matches (not random, not descriptive-performance); times are
medians. compspec-go fetches every artifact it is given from the registry on every run (its
`--cache` never reads back), so the native matcher is timed both on its usual path (artifacts in
the harness's registry cache) and fetching them all too. Then a manifest of N images sharing
the lab's artifacts (a campaign's many tags built alike): `harness candidates --matcher
compspec-go`, which hands compspec-go one image per distinct artifact, against `compspec match`
given every image.

Needs the lab registry (https://127.0.0.1) with the artifacts published; without it, says so
and ends with a JSON line of no figures. Without compspec-go (on PATH or $HARNESS_COMPSPEC) it
says it is absent and measures the native side alone.

    python benchmarks/bench_compspec.py [--quick]     # --quick: fewer repeats, 50 images
"""

from __future__ import annotations

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
from harness.errors import HarnessError  # noqa: E402
from harness.select import compspec_go, manifest, matching, modes  # noqa: E402
from harness.select.artifacts import ArtifactStore, probe_registry  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LAB_MANIFEST = ROOT / "containers" / "lab" / "manifests.yaml"
HOST = {  # Debian 12 amd64 with Open MPI, spelled as the lab's artifacts spell it
    "io.archspec.cpu.target": "amd64",
    "org.supercontainers.os.vendor": "debian",
    "org.supercontainers.os.version": "12",
    "org.supercontainers.hardware.gpu.available": "no",
    "org.supercontainers.mpi.implementation": "OpenMPI",
}
MODE = "descriptive-mpi"


def lab_pairs() -> list[dict] | str:
    """The lab's image/artifact pairs, or why they cannot be read here."""
    if not LAB_MANIFEST.is_file():
        return f"{LAB_MANIFEST.relative_to(ROOT)} is not written"
    pairs = [
        {"name": i["name"], "artifact": i["artifact"]}
        for i in yaml.safe_load(LAB_MANIFEST.read_text())["images"]
    ]
    try:
        probe_registry(pairs[0]["artifact"])
    except HarnessError as exc:
        return str(exc)
    return pairs


def per_mode(path: Path, cache: Path, exe: str | None, graph: Path, repeat: int) -> list[dict]:
    """Each mode's candidates timed by the native matcher (three ways) and by compspec match."""
    images = manifest.load(path)
    ArtifactStore(registry_cache=cache).get(images[0].name, images[0].artifact)  # import oras
    warm_store = ArtifactStore(registry_cache=cache)
    fresh = iter(range(10**6))
    rows = []
    # Modes that ask for more than HOST states (the microarchitecture descriptive-performance
    # compares by archspec ancestry, which compspec-go has no rule for) are not compared here.
    for mode in (m for m in modes.builtin().values() if m.keys and set(m.keys) <= HOST.keys()):
        native = [v.image.name for v in matching.candidates(images, mode, HOST, warm_store)]

        def cached(mode=mode):
            matching.candidates(
                manifest.load(path), mode, HOST, ArtifactStore(registry_cache=cache)
            )

        def fetched(mode=mode):
            store = ArtifactStore(registry_cache=cache.parent / f"fresh-{next(fresh)}")
            matching.candidates(manifest.load(path), mode, HOST, store)

        row = {
            "mode": mode.name,
            "n": len(native),
            "warm": median_s(
                lambda mode=mode: matching.candidates(images, mode, HOST, warm_store), 50
            ),
            "cached": median_s(cached, 4 * repeat),
            "fetched": median_s(fetched, repeat),
        }
        if exe:
            fields = compspec_go.criteria(mode, HOST)
            go = compspec_go.run(path, fields, exe=exe, graph=graph).matches
            assert sorted(go) == sorted(native), (mode.name, go, native)
            row["go"] = median_s(
                lambda f=fields: compspec_go.run(path, f, exe=exe, graph=graph), repeat
            )
        rows.append(row)
    return rows


def show(rows: list[dict], go: bool) -> None:
    head = f"{'mode':18} {'cand':>4} {'native warm':>12} {'native cached':>14} {'native fetch':>13}"
    print(head + (f" {'compspec match':>15} {'go/cached':>10} {'go/fetch':>9}" if go else ""))
    for r in rows:
        text = (
            f"{r['mode']:18} {r['n']:>4} {r['warm'] * 1e3:>9.3f} ms {r['cached'] * 1e3:>11.2f} ms"
            f" {r['fetched'] * 1e3:>10.1f} ms"
        )
        if go:
            text += (
                f" {r['go'] * 1e3:>12.1f} ms {r['go'] / r['cached']:>9.0f}x"
                f" {r['go'] / r['fetched']:>8.1f}x"
            )
        print(text)
    print("native warm:   artifacts in memory (what a run's re-selection costs)")
    print("native cached: manifest + artifacts from the harness's registry cache + match")
    print("native fetch:  manifest + every artifact fetched from the registry (oras) + match")


def main() -> int:
    args = arguments(__doc__.splitlines()[0])
    repeat, n = (1, 50) if args.quick else (5, 1_000)
    pairs = lab_pairs()
    if isinstance(pairs, str):
        print(f"bench_compspec: skipped: {pairs}")
        emit("compspec", "lab", [], skipped=pairs)
        return 0
    try:
        exe = compspec_go.binary()
    except HarnessError as exc:
        print(f"bench_compspec: compspec-go is absent, its side is not measured: {exc}")
        exe = None
    with tempfile.TemporaryDirectory(prefix="bench-compspec-") as tmp:
        tmp = Path(tmp)
        path = tmp / "lab-manifest.yaml"
        path.write_text(yaml.safe_dump({"images": pairs}, sort_keys=False))
        graph = compspec_go.write_schema_graph(tmp / "schema-graph.json")
        rows = per_mode(path, tmp / "registry-cache", exe, graph, repeat)
        host = tmp / "host.yaml"
        host.write_text(yaml.safe_dump(HOST))
        env = env_with({"XDG_CACHE_HOME": str(tmp / "xdg")})

        def candidates(manifest_path: Path, matcher: str):
            argv = [sys.executable, "-m", "harness.cli", "candidates", "--json"]
            argv += ["--manifests", str(manifest_path), "--mode", MODE, "--host", str(host)]
            return lambda: child(argv + ["--matcher", matcher], env=env)

        candidates(path, "native")()  # fills the harness's registry cache
        cli = best_of(repeat, candidates(path, "native"))
        many = tmp / "many.yaml"  # n images, each with one of the lab's artifacts
        twins = [dict(pairs[i % len(pairs)]) for i in range(n)]
        for i, twin in enumerate(twins):
            twin["name"] += f"-{i}"
        many.write_text(yaml.safe_dump({"images": twins}, sort_keys=False))
        figures = []
        mpi = next(r for r in rows if r["mode"] == MODE)
        if exe:
            go_argv = [exe, "match", "-i", str(many), "--cache-graph", str(graph)]
            for field in compspec_go.criteria(modes.resolve(MODE), HOST):
                go_argv += ["--match", field]
            go_many = best_of(1, lambda: child(go_argv))
            harness_go = best_of(repeat, candidates(many, "compspec-go"))
            match = "compspec match (one process, fetches every artifact)"
            figures += [
                figure(f"native {MODE}, in process", mpi["cached"], "s", match, mpi["go"]),
                figure("harness candidates, a process", cli.seconds, "s", match, mpi["go"]),
                figure(
                    f"candidates --matcher compspec-go, {n:,} images",
                    harness_go.seconds,
                    "s",
                    f"compspec match given all {n:,} images",
                    go_many.seconds,
                ),
            ]
        else:
            figures.append(
                figure(
                    f"native {MODE}, in process",
                    mpi["cached"],
                    "s",
                    "native, every artifact fetched from the registry",
                    mpi["fetched"],
                )
            )
    print(f"lab manifest: {len(pairs)} images, host debian 12 amd64 OpenMPI; medians")
    show(rows, exe is not None)
    emit(
        "compspec", f"lab, {len(pairs)} images", figures, compspec_go="present" if exe else "absent"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
