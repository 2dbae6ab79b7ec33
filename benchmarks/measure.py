"""What the benchmarks share: their arguments, a measured child process, and the JSON line.

Every benchmark prints what it measured against a peer measured in the same run, then ends
its output with one JSON line (`emit`): `{"bench", "size", "figures": [...]}`, each figure
`{"name", "value", "unit", "peer", "peer_value", "ratio", "bound", "ratio_bound"}` (all but
name, value and unit may be null): `bound` is the most the value may be, `ratio_bound` the most
its ratio to the peer may be. Bounds are set at full size only (a --quick size checks that the
benchmark works). `python -m benchmarks.run` collects these lines into benchmarks/results.jsonl and
`python -m benchmarks.table` turns them into the README's table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def arguments(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="the small size CI runs (make bench-smoke)"
    )
    return parser.parse_args(argv)


@dataclass(frozen=True)
class Child:
    seconds: float
    cpu_s: float  # user + system time: what the machine's other load does not inflate much
    peak_mb: float  # the child's own peak resident set, not the benchmark's
    stdout: str


# Linux counts in a process's peak resident set the memory of the process it was forked from
# (the high-water mark of the address space it replaced at exec). So each measured process is
# started by this small launcher, not by the benchmark, whose memory grows with its inputs.
LAUNCHER = """
import json, os, sys, time
report, argv = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.posix_spawnp(argv[0], argv, os.environ)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - start
with open(report, "w") as fh:
    json.dump([seconds, os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime,
               usage.ru_maxrss / 1024], fh)
"""


def child(argv: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> Child:
    """Run one measured process to its end; CalledProcessError (with its stderr) if it fails."""
    with tempfile.TemporaryDirectory(prefix="bench-child-") as tmp:
        report, out = Path(tmp) / "rusage.json", Path(tmp) / "stdout"
        with out.open("w+b") as fh:  # not a pipe: a large output never blocks the child
            launched = subprocess.run(
                [sys.executable, "-S", "-c", LAUNCHER, str(report), *argv],
                stdout=fh,
                stderr=subprocess.PIPE,
                env=env,
                cwd=cwd,
            )
        stdout, stderr = out.read_text(), launched.stderr.decode()
        if launched.returncode != 0 or not report.exists():  # the launcher itself failed
            raise subprocess.CalledProcessError(launched.returncode, argv, stdout, stderr)
        seconds, status, cpu_s, peak_mb = json.loads(report.read_text())
    if status != 0:
        raise subprocess.CalledProcessError(status, argv, stdout, stderr)
    return Child(seconds, cpu_s, peak_mb, stdout)


def best_of(repeat: int, fn) -> Child:
    """The fastest of `repeat` runs (the least disturbed by other load), with its peak memory."""
    return min((fn() for _ in range(repeat)), key=lambda c: c.seconds)


def median_s(fn, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def figure(
    name: str,
    value: float,
    unit: str = "s",
    peer: str | None = None,
    peer_value: float | None = None,
    bound: float | None = None,
    ratio_bound: float | None = None,
) -> dict:
    """One measured figure; `ratio` is value / peer_value, `bound` the most `value` may be,
    `ratio_bound` the most `ratio` may be."""
    ratio = value / peer_value if peer_value else None
    return {
        "name": name,
        "value": value,
        "unit": unit,
        "peer": peer,
        "peer_value": peer_value,
        "ratio": ratio,
        "bound": bound,
        "ratio_bound": ratio_bound,
    }


def checks(f: dict) -> list[tuple[str, float, bool]]:
    """Each bound of a figure as (what it bounds: "value" or "ratio", the bound, whether the
    figure is within it)."""
    found = []
    if f.get("bound") is not None:
        found.append(("value", f["bound"], f["value"] <= f["bound"]))
    if f.get("ratio_bound") is not None:
        ok = f.get("ratio") is not None and f["ratio"] <= f["ratio_bound"]
        found.append(("ratio", f["ratio_bound"], ok))
    return found


def within(f: dict) -> bool | None:
    """Whether a figure is within every bound it has; None: it has none."""
    found = checks(f)
    return all(ok for _, _, ok in found) if found else None


def env_with(extra: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **extra}


def line(f: dict) -> str:
    """A figure as one line of text: value, ratio to its peer, and its bound."""
    scale, unit = (1e3, "ms") if f["unit"] == "s" and f["value"] < 0.1 else (1, f["unit"])
    text = f"  {f['name']:50} {f['value'] * scale:9.3f} {unit:2}"
    if f["ratio"] is not None:
        text += f"  {f['ratio']:7.3g}x {f['peer']}"
    verdicts = [
        f"{'within' if ok else 'OVER'} bound "
        + (f"{limit * scale:g} {unit}" if kind == "value" else f"{limit:g}x the peer")
        for kind, limit, ok in checks(f)
    ]
    if verdicts:
        text += f"  ({'; '.join(verdicts)})"
    return text


def emit(bench: str, size: str, figures: list[dict], **extra) -> None:
    """Print each figure, then the benchmark's last line: its figures as one JSON object."""
    for f in figures:
        print(line(f))
    print(json.dumps({"bench": bench, "size": size, "figures": figures, **extra}), flush=True)
