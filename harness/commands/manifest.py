"""`harness manifest init`: a manifest pairing images with their artifacts."""

from __future__ import annotations

from pathlib import Path

from harness import application


def add_parser(sub) -> None:
    p = sub.add_parser("manifest", help="compspec-go manifests")
    msub = p.add_subparsers(dest="manifest_command", required=True)
    m = msub.add_parser("init", help="a manifest pairing images with their artifacts")
    m.add_argument("images", nargs="+", help="image references or local SIF files")
    m.add_argument("-o", "--out", type=Path, required=True, help="the manifest to write")
    m.add_argument(
        "--command",
        dest="image_command",
        action="append",
        metavar="ARG",
        help="one argument of what to run in each image, in order, e.g. --command=prog "
        "--command=-in --command=input (default: the application's command, "
        f"{' '.join(application.load().command)})",
    )
    m.add_argument("--workdir", help="where to run it inside the image")
    p.set_defaults(main=main)


def main(args) -> int:
    from harness.select.manifest_init import write

    write(args.images, args.out, args.image_command, args.workdir)
    print(f"wrote {args.out} ({len(args.images)} images)")
    return 0
