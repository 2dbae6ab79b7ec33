"""What the benchmarks share: their arguments, a measured child process, and the JSON line.

Every benchmark prints what it measured against a peer measured in the same run, then ends
its output with one JSON line (`emit`): `{"bench", "size", "figures": [...]}`, each figure
`{"name", "value", "unit", "peer", "peer_value", "ratio", "bound"}` (peer, ratio and bound may
be null). `python -m benchmarks.run` collects these lines into benchmarks/results.jsonl and
`python -m benchmarks.table` turns them into the README's table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
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
    peak_mb: float  # the child's own peak resident set (wait4's rusage), not the benchmark's
    stdout: str


def child(argv: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> Child:
    """Run one measured process to its end; CalledProcessError (with its stderr) if it fails."""
    with tempfile.TemporaryFile() as out:  # not a pipe: a large output never blocks the child
        start = time.perf_counter()
        with subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE, env=env, cwd=cwd) as proc:
            stderr = proc.stderr.read().decode()
            _, status, usage = os.wait4(proc.pid, 0)  # the rusage of this child alone
            seconds = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        stdout = out.read().decode()
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, argv, stdout, stderr)
    return Child(seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, stdout)


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
) -> dict:
    """One measured figure; `ratio` is value / peer_value, `bound` the most `value` may be."""
    ratio = value / peer_value if peer_value else None
    return {
        "name": name,
        "value": value,
        "unit": unit,
        "peer": peer,
        "peer_value": peer_value,
        "ratio": ratio,
        "bound": bound,
    }


def env_with(extra: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **extra}


def line(f: dict) -> str:
    """A figure as one line of text: value, ratio to its peer, and its bound."""
    scale, unit = (1e3, "ms") if f["unit"] == "s" and f["value"] < 0.1 else (1, f["unit"])
    text = f"  {f['name']:50} {f['value'] * scale:9.3f} {unit:2}"
    if f["ratio"] is not None:
        text += f"  {f['ratio']:7.3g}x {f['peer']}"
    if f["bound"] is not None:
        verdict = "within" if f["value"] <= f["bound"] else "OVER"
        text += f"  ({verdict} bound {f['bound'] * scale:g} {unit})"
    return text


def emit(bench: str, size: str, figures: list[dict], **extra) -> None:
    """Print each figure, then the benchmark's last line: its figures as one JSON object."""
    for f in figures:
        print(line(f))
    print(json.dumps({"bench": bench, "size": size, "figures": figures, **extra}), flush=True)
