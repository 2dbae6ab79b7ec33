"""`harness prepull`: pull every image of a manifest on every Flux node."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    # prepull, artifact create and lab * parse their own arguments (their --help included)
    p = sub.add_parser(
        "prepull", help="pull every image of a manifest on every Flux node", add_help=False
    )
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(main=main)


def main(args) -> int:
    from harness.run import prepull

    return prepull.main(args.rest)
