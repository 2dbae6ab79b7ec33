"""`harness predict`: the expected success rate of each mode, before running."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from harness.commands.options import (
    executor_view,
    mpi_model_arg,
    selection_args,
    selection_inputs,
    view_arg,
)
from harness.commands.output import warn_skipped
from harness.usage import count


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="expected success rate of each mode, before running")
    selection_args(p, mode="optional")
    p.add_argument(
        "--protocol",
        choices=["host", "reference"],
        default="host",
        help="host: this harness's modes on the host; reference: the Flux Operator "
        "protocol of rse-ops/lammps-matrix (Flux views mounted into images)",
    )
    mpi_model_arg(p)
    view_arg(p, "without --host, predict for this host")
    p.add_argument("--iters", type=count, default=30, help="runs per mode to scale counts to")
    p.add_argument(
        "--measured",
        type=Path,
        nargs="*",
        default=[],
        help="harness outdirs or a published results csv to compare with",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(main=main)


def main(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from harness.judge.reasons import SUCCESS
    from harness.select import modes, predict

    images, own, store = selection_inputs(args)
    seen = predict.measured(args.measured)  # read before any note: bad input stays one line
    # without a host file: this host as the executor a run would use sees it
    desc = own if args.host_file else executor_view(args, own)
    known = modes.load(args.mode_file)
    chosen = {args.mode: modes.resolve(args.mode, args.mode_file)} if args.mode else known
    model = args.mpi_model if args.protocol == "host" else None
    for note in predict.assumptions(own, chosen, model)[1]:
        print(f"harness: note: the host description has {note}", file=sys.stderr)
    if args.protocol == "reference":
        preds = predict.reference(images, store, desc, chosen)
    else:
        preds = predict.on_host(images, store, desc, chosen, args.mpi_model, own)
    warn_skipped(store.skipped)
    n = args.iters
    if args.json:
        print(
            json.dumps(
                {
                    p.mode: {
                        "success_rate": round(p.success, 4),
                        "expected": {r: round(v * n, 2) for r, v in sorted(p.outcomes.items())},
                        "rules": {
                            r: {w: round(v, 4) for w, v in c.items()} for r, c in p.why.items()
                        },
                        "measured": dict(seen.get(p.mode, {})),
                    }
                    for p in preds
                },
                indent=2,
            )
        )
        return 0
    console = Console(width=None if sys.stdout.isatty() else 100)
    table = Table(
        "mode",
        "predicted success",
        f"expected of {n}",
        "measured",
        "predicted failures (rule: share)",
        title=f"prediction ({args.protocol})",
    )
    for p in preds:
        got = seen.get(p.mode)
        got_s = f"{got[SUCCESS]}/{sum(got.values())}" if got else "-"
        rules = "; ".join(
            f"{r}: {v:.0%}" for r, v in sorted(p.outcomes.items()) if r != SUCCESS and v > 0
        )
        table.add_row(p.mode, f"{p.success:.0%}", f"{p.success * n:.1f}", got_s, rules)
    console.print(table)
    for p in preds:
        for reason, whys in p.why.items():
            for why, share in whys.most_common():
                console.print(f"  {p.mode}: {reason} {share:.0%}: {why}")
    return 0
