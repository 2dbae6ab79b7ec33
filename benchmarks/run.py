"""Run every benchmark (benchmarks/bench_*.py) and keep the JSON line each one ends with.

    python -m benchmarks.run [--quick] [--json FILE] [bench_x.py ...]

Each benchmark runs as `python benchmarks/bench_x.py [--quick]`, its output shown as it comes.
The last line of its output that is a JSON object is appended to FILE (benchmarks/results.jsonl
unless given) with the script's name, whether it was the quick size, when, at which commit, and
the machine's cores and load average (the machine may be shared). A benchmark that exits non-zero
fails the run, after every other one has run: `make bench-smoke` in CI catches a broken one.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results.jsonl"


def last_json_object(lines: list[str]) -> dict | None:
    for text in reversed(lines):
        text = text.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    return None


def commit() -> str | None:
    proc = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    if proc.returncode != 0:
        return None
    return proc.stdout.strip() or None


def run_one(script: Path, quick: bool) -> tuple[int, dict | None]:
    """Run a benchmark, echoing its output; its exit status and its JSON line."""
    argv = [sys.executable, str(script)] + (["--quick"] if quick else [])
    lines = []
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=ROOT) as proc:
        for text in proc.stdout:
            print(text, end="", flush=True)
            lines.append(text)
    return proc.returncode, last_json_object(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every benchmark at its quick size")
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"default: {RESULTS}")
    parser.add_argument("scripts", nargs="*", help="benchmark scripts (default: every one)")
    args = parser.parse_args(argv)
    scripts = [Path(s) for s in args.scripts] or sorted(HERE.glob("bench_*.py"))
    failed = []
    for script in scripts:
        print(f"== {script.name}{' --quick' if args.quick else ''}", flush=True)
        load = os.getloadavg()[0]
        status, result = run_one(script, args.quick)
        if status != 0:
            failed.append(f"{script.name} (exit {status})")
            continue
        if result is None:
            print(f"benchmarks.run: warning: {script.name} printed no JSON line", file=sys.stderr)
            continue
        record = {
            "script": script.name,
            "quick": args.quick,
            "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "commit": commit(),
            "cpus": os.cpu_count(),
            "load": round(load, 2),
            "result": result,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        with args.json.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
    if failed:
        print(f"benchmarks.run: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
