"""`harness artifact create|push`: compatibility artifacts."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("artifact", help="compatibility artifacts")
    asub = p.add_subparsers(dest="artifact_command", required=True)
    a = asub.add_parser(
        "create",
        help="describe an image (SIF, docker://, oras://) as a CompatibilitySpec",
        add_help=False,
    )
    a.add_argument("rest", nargs=argparse.REMAINDER)
    a = asub.add_parser("push", help="push an artifact beside its image (<tag>-compspec)")
    a.add_argument("image", help="the image reference (registry/name:tag)")
    a.add_argument("artifact", type=Path, help="the CompatibilitySpec JSON file")
    a.add_argument("--to", help="another artifact reference (default: the image's tag-compspec)")
    p.set_defaults(main=main)


def main(args) -> int:
    if args.artifact_command == "push":
        from harness.select.artifact_push import push

        print(push(args.image, args.artifact, args.to))
        return 0
    from harness.run.runtime import local_sif
    from harness.select import artifact_create

    return artifact_create.main(args.rest, fetch=local_sif)
