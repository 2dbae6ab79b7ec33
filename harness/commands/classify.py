"""`harness classify`: the outcome of raw job logs."""

from __future__ import annotations

import json
from pathlib import Path

from harness.commands.options import application_arg
from harness.errors import HarnessError


def add_parser(sub) -> None:
    p = sub.add_parser("classify", help="classify raw job logs")
    p.add_argument("paths", nargs="+", type=Path, help="log files or directories of them")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    application_arg(p)  # its completion criteria, its own failure rules
    p.set_defaults(main=main)


def main(args) -> int:
    from harness import application
    from harness.judge.classify import classify_file

    app = application.load(args.application)  # a bad name or file: one line, before any log
    files: list[Path] = []
    for path in args.paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix in (".log", ".out"))
        elif path.is_file():
            files.append(path)
        else:
            raise HarnessError(f"{path}: no such file or directory")
    # A job's stdout (X.out) is read with its stderr (X.err), as `harness run` classifies it.
    results = [
        (f, classify_file(f, f.with_suffix(".err") if f.suffix == ".out" else None, app))
        for f in files
    ]
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "path": str(f),
                        "reason": c.reason,
                        "evidence": c.evidence,
                        "source": c.source,
                        "note": c.note,
                    }
                    for f, c in results
                ],
                indent=2,
            )
        )
    else:
        for f, c in results:
            print(f"{f}\t{c.reason}\t{c.evidence}")
    return 0
