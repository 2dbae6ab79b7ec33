"""`harness records check|repair`: an outdir's records.jsonl."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("records", help="run records: check or repair an outdir's records.jsonl")
    rsub = p.add_subparsers(dest="records_command", required=True)
    r = rsub.add_parser(
        "check",
        help="validate records.jsonl line by line: the first bad line (exit 2), else the count",
    )
    r.add_argument("outdir", help="the run directory")
    r = rsub.add_parser(
        "repair",
        help="keep the first valid record per (mode, iteration); move the rest to "
        "records.rejected.jsonl",
    )
    r.add_argument("outdir", help="the run directory")
    p.set_defaults(main=main)


def main(args) -> int:
    from harness import records
    from harness.outdir import outdir_path
    from harness.record_index import check

    outdir = outdir_path(args.outdir)
    if args.records_command == "check":
        n, modes = check(outdir)
        print(f"{records.records_path(outdir)}: {n} records, {modes} modes, ok")
        return 0
    kept, rejected = records.repair_all(outdir)
    print(f"{outdir}: kept {kept} records, moved {rejected} to {records.REJECTED_FILE}")
    return 0
