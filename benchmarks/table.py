"""The README's performance table, made from the benchmarks' JSON lines.

    python -m benchmarks.table [FILE] [--readme README.md]

Prints a markdown table of the newest full-size run (not --quick) of each benchmark script in
FILE (benchmarks/results.jsonl unless given), one row per figure: what was measured, its peer
measured in the same run, their ratio, and the bound where the project sets one. A benchmark
whose JSON line has no `figures` list (benchmarks/measure.py says what one holds) gets a row per
number in it. With --readme, the table replaces what stands between the README's markers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks.measure import checks

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.jsonl"
START = "<!-- bench-table:start (python -m benchmarks.table --readme README.md) -->"
END = "<!-- bench-table:end -->"
HEADER = (
    "| benchmark | figure | measured | peer (same run) | peer measured | ratio | bound |",
    "|---|---|---:|---|---:|---:|---|",
)


def newest_full_runs(lines: list[str]) -> list[dict]:
    """The last full-size record of each script, by script name."""
    newest: dict[str, dict] = {}
    for text in lines:
        if not text.strip():
            continue
        record = json.loads(text)
        if not record.get("quick"):
            newest[record["script"]] = record
    return [newest[name] for name in sorted(newest)]


def amount(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    if unit == "s" and value < 0.1:
        return f"{value * 1e3:.3g} ms"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "MB":
        return f"{value:.0f} MB"
    return f"{value:.4g} {unit}".strip()


def figures_of(result: dict) -> list[dict]:
    """The result's figures; for a result in another shape, each number in it (two levels)."""
    if isinstance(result.get("figures"), list):
        return result["figures"]
    found = []
    for key, value in result.items():
        inner = value.items() if isinstance(value, dict) else [("", value)]
        for sub, number in inner:
            if isinstance(number, int | float) and not isinstance(number, bool):
                found.append({"name": f"{key}.{sub}" if sub else key, "value": number, "unit": ""})
    return found


def ratio_text(ratio: float | None) -> str:
    if ratio is None:
        return ""
    return f"1/{1 / ratio:,.0f}" if 0 < ratio < 0.01 else f"{ratio:.3g}×"


def row(label: str, f: dict) -> str:
    unit = f.get("unit", "")
    verdict = ", ".join(
        (f"≤ {amount(limit, unit)}" if kind == "value" else f"ratio ≤ {limit:g}×")
        + f": {'within' if ok else 'over'}"
        for kind, limit, ok in checks(f)
    )
    ratio = f.get("ratio")
    cells = [
        label,
        f["name"],
        amount(f["value"], unit),
        f.get("peer") or "",
        amount(f.get("peer_value"), unit),
        ratio_text(ratio),
        verdict,
    ]
    return "| " + " | ".join(cells) + " |"


def table(lines: list[str]) -> str:
    rows, notes = list(HEADER), []
    for record in newest_full_runs(lines):
        result = record["result"]
        label = f"{record['script']} ({result['size']})" if "size" in result else record["script"]
        found = figures_of(result)
        rows += [row(label if i == 0 else "", f) for i, f in enumerate(found)]
        if not found and result.get("skipped"):  # e.g. a tool it compares with is not installed
            rows.append(f"| {label} | not measured: {str(result['skipped']).replace('|', '/')} "
                        "|  |  |  |  |  |")  # fmt: skip
        notes.append(
            f"{record['script']}: {record['when']}, commit {record.get('commit') or '?'}, "
            f"{record.get('cpus')} cores, load average {record.get('load')} at its start"
        )
    return "\n".join(rows + [""] + [f"- {n}" for n in notes]) + "\n"


def replace_block(readme: str, block: str) -> str:
    """The README with `block` between its markers; ValueError if they are missing."""
    head, start, rest = readme.partition(START)
    _, end, tail = rest.partition(END)
    if not start or not end:
        raise ValueError(f"the README lacks the markers {START!r} ... {END!r}")
    return f"{head}{START}\n{block}{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", type=Path, default=RESULTS)
    parser.add_argument("--readme", type=Path, help="write the table into this README")
    args = parser.parse_args(argv)
    try:
        block = table(args.results.read_text().splitlines())
        if args.readme is None:
            print(block, end="")
        else:
            args.readme.write_text(replace_block(args.readme.read_text(), block))
    except (OSError, ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
        print(f"benchmarks.table: {args.results}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
