"""`harness explain`: every attribute compared, per image, and the verdict."""

from __future__ import annotations

import sys

from harness.commands.options import selection_args, selection_inputs
from harness.commands.output import short_name, warn_skipped


def add_parser(sub) -> None:
    p = sub.add_parser("explain", help="every attribute compared, per image, and the verdict")
    selection_args(p, mode="optional")
    p.add_argument(
        "--wide", action="store_true", help="full image names (default: tags, to fit 100 columns)"
    )
    p.set_defaults(main=main)


def main(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from harness.select import matching, modes

    # Rich assumes 80 columns when output is not a terminal: too narrow for attribute keys.
    console = Console(width=None if sys.stdout.isatty() else (200 if args.wide else 100))
    shown = (lambda name: name) if args.wide else short_name
    # without --wide, a key by its last two parts (os.version, gpu.available, ...)
    key = (lambda k: k) if args.wide else (lambda k: ".".join(k.split(".")[-2:]))
    names = [args.mode] if args.mode else list(modes.load(args.mode_file))
    images, desc, store = selection_inputs(args)
    for name in names:
        mode = modes.resolve(name, args.mode_file)
        missing = [k for k in mode.keys if k not in desc]
        if missing and not args.mode:  # every mode: say why this one cannot be compared
            console.print(f"mode {mode.name}: the host description lacks {', '.join(missing)}")
            continue
        verdicts = matching.judge(images, mode, desc, store)
        table = Table(title=f"mode {mode.name}: {mode.description}")
        table.add_column("image", no_wrap=True)
        table.add_column("attribute", no_wrap=True)
        for col in ("host", "image value", ""):
            table.add_column(col)
        table.add_column("verdict", overflow="fold")  # every failing attribute, wrapped
        for v in verdicts:
            if not v.checks:
                table.add_row(shown(v.image.name), "-", "-", "-", "", "[green]in[/] (no filter)")
            for j, c in enumerate(v.checks):
                mark = "[green]pass[/]" if c.ok else "[red]fail[/]"
                verdict = ""
                if j == 0:
                    differs = ", ".join(key(f.key) for f in v.failed)
                    verdict = "[green]in[/]" if v.ok else f"[red]out[/]: {differs}"
                table.add_row(
                    shown(v.image.name) if j == 0 else "",
                    key(c.key),
                    c.host,
                    c.image if c.image is not None else "(absent)",
                    mark,
                    verdict,
                )
            table.add_section()
        console.print(table)
        allowed = sum(v.ok for v in verdicts)
        if allowed:
            console.print(f"mode {mode.name}: {allowed} of {len(verdicts)} images are candidates")
        else:
            console.print(matching.why_empty(mode, verdicts))
    from harness.run.candidates import gpu_flags
    from harness.select.host import gpu_runtime_flags

    for image, added in gpu_flags(images, store, gpu_runtime_flags()).items():
        console.print(
            f"launch adds {' '.join(added)} to {shown(image)} (a GPU image on a GPU host)"
        )
    warn_skipped(store.skipped)
    return 0
