"""What the lab benchmarks share: a one-image manifest of a given length, the last record of a
run, and the command line that prints the figure as a ratio and writes one JSON line.

A benchmark gives `main()` its name, its peer, its bound and a `measure(rounds, steps)` that
returns medians ("peer_median_s", "harness_median_s", others); --quick is 2 rounds of a
100-step job (what CI runs), where the ratio's bound is not judged.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from benchmarks.measure import emit, figure, within

ROOT = Path(__file__).resolve().parents[1]
TAG = "127.0.0.1/lab/lammps-matrix:openmpi-debian-12-amd64"


def manifest(tmp: Path, steps: int) -> Path:
    """The lab's bookworm Open MPI image, LAMMPS running `steps` steps (400: a few seconds)."""
    entries = yaml.safe_load((ROOT / "containers/lab/manifests.yaml").read_text())["images"]
    entry = next(e for e in entries if e["name"] == TAG)
    entry["command"] = [*entry["command"], "-var", "steps", str(steps)]
    path = tmp / "m.yaml"
    path.write_text(yaml.safe_dump({"images": [entry]}))
    return path


def last_record(outdir: Path) -> dict:
    rec = json.loads((outdir / "records.jsonl").read_text().splitlines()[-1])
    assert rec["reason"] == "success", rec["evidence"]
    return rec


def timed(argv: list[str], logs: Path, env: dict | None = None) -> float:
    """Seconds `argv` takes, run as a user would (its output into files, as the harness's)."""
    t = time.perf_counter()
    with (logs / "bare.out").open("wb") as out, (logs / "bare.err").open("wb") as err:
        subprocess.run(argv, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def figures(peer: str, bound: float | None, measured: dict) -> list[dict]:
    """The harness iteration against the bare launcher (the ratio bounded), then the other
    medians the benchmark measured (e.g. the harness's own part of an iteration)."""
    out = [
        figure(
            "harness iteration (median)",
            measured["harness_median_s"],
            "s",
            f"bare {peer} (median)",
            measured["peer_median_s"],
            ratio_bound=bound,
        )
    ]
    for key, value in measured.items():
        if key.endswith("_median_s") and key not in ("harness_median_s", "peer_median_s"):
            out.append(figure(key.removesuffix("_median_s").replace("_", " ") + " (median)", value))
    return out


def main(
    doc: str,
    bench: str,
    peer: str,
    bound: float,
    missing: Callable[[], str | None],
    measure: Callable[[int, int], dict],
    rounds: int,
) -> int:
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=rounds)
    ap.add_argument("--steps", type=int, default=400, help="LAMMPS steps (400: a few seconds)")
    ap.add_argument("--quick", action="store_true", help="2 rounds of 100 steps (CI)")
    ap.add_argument("--check", action="store_true", help="exit 1 when over the bound")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.steps = 2, 100
    if why := missing():
        emit(bench, "lab", [], skipped=why)
        return 0
    measured = measure(args.rounds, args.steps)
    found = figures(peer, None if args.quick else bound, measured)
    emit(bench, f"{args.rounds} rounds of {args.steps} steps", found)
    return 1 if args.check and within(found[0]) is False else 0
