"""`harness report`: tables, CSV, markdown and plots from run records."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="tables, CSV, markdown and plots from run records")
    p.add_argument("outdirs", nargs="+", type=Path, help="run directories (harness run/census)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument(
        "--out",
        type=Path,
        help="where to write the report (default: the first outdir; a filtered report is "
        "written only where --out says)",
    )
    p.add_argument(
        "--compare",
        action="store_true",
        help="per-mode deltas of the other outdirs against the first, and whether the 95 %% "
        "intervals overlap",
    )
    p.add_argument(
        "--mode",
        dest="modes",
        action="append",
        help="only this mode (repeatable; shown in this order)",
    )
    p.add_argument("--image", dest="images", action="append", help="only this image (repeatable)")
    p.add_argument(
        "--reason", dest="reasons", action="append", help="only this reason (repeatable)"
    )
    p.add_argument(
        "--export-fom",
        type=Path,
        help="write the figures of merit of successful runs (with mode, image, reason, unit) "
        "to this CSV",
    )
    p.add_argument(
        "--export-fom-all",
        action="store_true",
        help="with --export-fom: every run's figures, failed and singleton runs too",
    )
    p.add_argument(
        "--mode-file", type=Path, help="YAML file of more modes (shown in the file's order)"
    )
    p.set_defaults(main=main)


def main(args) -> int:
    from harness import report

    return report.main(
        [str(d) for d in args.outdirs],
        args.json,
        str(args.out) if args.out else None,
        compare=args.compare,
        modes=args.modes,
        images=args.images,
        reasons=args.reasons,
        export_fom=args.export_fom,
        export_fom_all=args.export_fom_all,
        mode_file=args.mode_file,
    )
