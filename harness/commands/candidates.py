"""`harness candidates`: the images a mode allows for a host."""

from __future__ import annotations

import json

from harness.commands.options import matcher_arg, selection_args, selection_inputs
from harness.commands.output import warn_skipped


def add_parser(sub) -> None:
    p = sub.add_parser("candidates", help="images a mode allows for a host")
    selection_args(p)
    matcher_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(main=main)


def main(args) -> int:
    from harness.select import matching, modes

    images, desc, store = selection_inputs(args)
    mode = modes.resolve(args.mode, args.mode_file)
    verdicts = matching.select(args.matcher, args.manifests, images, mode, desc, store)
    warn_skipped(store.skipped)
    allowed = [v.image.name for v in verdicts]
    if args.json:
        print(json.dumps(allowed, indent=2))
    else:
        print("\n".join(allowed))
    return 0
