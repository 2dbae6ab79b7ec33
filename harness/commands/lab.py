"""`harness lab build|publish|verify`: the lab's image matrix, registry and artifacts."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("lab", help="the lab: image matrix, registry, artifacts")
    lsub = p.add_subparsers(dest="lab_command", required=True)
    for name in ("build", "publish", "verify"):
        a = lsub.add_parser(name, add_help=False)
        a.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(main=main)


def main(args) -> int:
    if args.lab_command == "build":
        from harness.lab import build

        return build.main(args.rest)
    from harness.lab import publish

    return (publish.verify_main if args.lab_command == "verify" else publish.main)(args.rest)
