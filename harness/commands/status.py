"""`harness status`: the progress of a run directory, from its records."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("status", help="progress of a run directory, from its records")
    p.add_argument("outdir", help="the run directory")
    p.set_defaults(main=main)


def main(args) -> int:
    from harness.outdir import outdir_path
    from harness.run.status import status

    print(status(outdir_path(args.outdir)))
    return 0
